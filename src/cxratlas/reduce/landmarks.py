"""The landmark layout: past `reduce.umap.landmarks` vectors, UMAP lays out (and HDBSCAN
clusters) a seeded sample of landmarks (chosen by image id where the ids are known), and every
other vector is placed on that map from its kNN neighbours (reduce.placement).

The landmarks' own kNN graph is searched like the full one (tuning.TunedSearch: the recall
target met on a query sample, scored in the original space) and its recall is measured and
reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cxratlas.reduce.knn import knn_recall
from cxratlas.reduce.placement import place_by_neighbours
from cxratlas.reduce.tuning import TunedSearch


def landmark_rows(n: int, m: int, seed: int, by_id: bool = False) -> np.ndarray:
    """The seeded landmarks. `by_id`: the rows are in canonical order (`reduce.order`), and the
    landmarks are its first m rows, the m lowest seeded hashes of the image ids: chosen by id,
    never by position in the archive, and an image stays a landmark as the archive grows
    unless m others hash below it. Else drawn from their own stream (not the trustworthiness
    sample's, which is drawn by position in either case)."""
    if by_id:
        return np.arange(min(m, n))
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(n, min(m, n), replace=False))


@dataclass
class Landmarks:
    rows: np.ndarray  # their rows in the full matrix, sorted
    Z: np.ndarray  # their vectors in the space UMAP reads (the PCA scores, or the vectors)
    idx: np.ndarray  # their own kNN graph: rows of Z, self first
    dist: np.ndarray
    knn: dict[str, Any]  # how it was searched, and its measured recall

    @classmethod
    def build(cls, Xn: np.ndarray, Z: np.ndarray, s, gpu: bool, by_id: bool = False) -> Landmarks:
        """The landmarks (`landmark_rows`) and their graph at the recall target. Built before
        the full graph: the copy of their vectors (a fifth of the matrix) then comes and goes
        while the matrix's memory is at its lowest, not on top of the full search's peak."""
        rows = landmark_rows(len(Xn), s.landmarks, s.rng_seed, by_id)
        X = Xn[rows]
        Zl = X if Z is Xn else Z[rows]
        idx, dist, method, tuning = TunedSearch(X, Zl, s.k, s.knn, gpu, s.rng_seed).graph()
        recall = knn_recall(X, idx, s.knn.recall_sample, s.rng_seed, gpu=gpu)
        knn = {"method": method, "recall": recall, "chosen": tuning["chosen"]}
        return cls(rows, Zl, idx, dist, knn)

    def place(self, xy_l, labels_l, knn_idx, knn_dist) -> tuple[np.ndarray, np.ndarray, dict]:
        """(the full map, its clusters, what placing took) from the landmarks' map."""
        n = len(knn_idx)
        xy = np.zeros((n, 2), np.float64)
        labels = np.full(n, -1, np.int32)
        placed = np.zeros(n, bool)
        xy[self.rows], labels[self.rows], placed[self.rows] = xy_l, labels_l, True
        rounds = place_by_neighbours(xy, labels, placed, knn_idx, knn_dist)
        info = {"n": len(self.rows), "rounds": int(rounds.max()),
                "unplaced": int((rounds < 0).sum())}  # fmt: skip
        return xy.astype(np.float32), labels, info

    def share_of(self, rows: np.ndarray) -> float:
        """The share of `rows` (the trustworthiness sample) that UMAP laid out, not placed."""
        return float(np.isin(rows, self.rows).mean())
