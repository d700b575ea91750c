"""The landmark layout: past `reduce.umap.landmarks` vectors, UMAP lays out (and HDBSCAN
clusters) a seeded sample of landmarks, and every other vector is placed on that map from its
kNN neighbours (reduce.placement).

The landmarks' own kNN graph is searched like the full one (tuning.TunedSearch: the recall
target met on a query sample, scored in the original space) and its recall is measured and
reported. Their vectors are copied out before the full matrix is freed, so the copy (a fifth of
the matrix) never sits on top of it for long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cxratlas.reduce.knn import knn_recall
from cxratlas.reduce.placement import place_by_neighbours
from cxratlas.reduce.tuning import TunedSearch


def landmark_rows(n: int, m: int, seed: int) -> np.ndarray:
    """The seeded landmarks, drawn from their own stream: not the trustworthiness sample's."""
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(n, min(m, n), replace=False))


@dataclass
class Landmarks:
    rows: np.ndarray  # their rows in the full matrix, sorted
    X: np.ndarray  # their L2-normalised vectors (the recall reference)
    Z: np.ndarray  # the space their graph is searched in and UMAP reads (X, or its PCA)

    @classmethod
    def take(cls, Xn: np.ndarray, Z: np.ndarray, m: int, seed: int) -> Landmarks:
        rows = landmark_rows(len(Xn), m, seed)
        X = Xn[rows]
        return cls(rows, X, X if Z is Xn else Z[rows])

    def graph(self, s, gpu: bool) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The landmarks' kNN graph at the recall target, and what it measured."""
        idx, dist, method, tuning = TunedSearch(self.X, self.Z, s.k, s.knn, gpu, s.rng_seed).graph()
        recall = knn_recall(self.X, idx, s.knn.recall_sample, s.rng_seed, gpu=gpu)
        self.X = None  # UMAP needs only Z: give the copy back
        return idx, dist, {"method": method, "recall": recall, "chosen": tuning["chosen"]}

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
