"""One model's reduction, run once: [PCA] -> kNN graph -> UMAP map -> clusters -> outliers.

The kNN graph is built once and reused by UMAP, the atlas neighbours and the outlier score.
Every run measures the graph's recall against exact search in the original space (so the loss
from PCA and from approximate search both count) and the map's trustworthiness, on samples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cxratlas.logs import alert
from cxratlas.reduce.backend import ReduceBackend, select_backend
from cxratlas.reduce.knn import knn_recall, l2_normalise
from cxratlas.reduce.landmarks import Landmarks
from cxratlas.reduce.order import RowOrder
from cxratlas.reduce.outliers import knn_outlier_score, knn_pagerank
from cxratlas.reduce.settings import ReduceSettings
from cxratlas.reduce.stability import MapUpdate
from cxratlas.reduce.tuning import TunedSearch

log = logging.getLogger(__name__)


@dataclass
class ReduceResult:
    xy: np.ndarray  # (n, 2) float32
    knn_idx: np.ndarray  # (n, k) int64, row positions in the input order, self first
    knn_dist: np.ndarray  # (n, k) float32 cosine distances
    cluster: np.ndarray  # (n,) int32, -1 noise
    outlier: np.ndarray  # (n,) float32
    pagerank: np.ndarray  # (n,) float32
    timings: dict[str, float] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)


def sample_rows(n: int, sample: int, seed: int) -> np.ndarray:
    """The seeded subsample of rows that trustworthiness is scored on."""
    return np.sort(np.random.default_rng(seed).choice(n, min(sample, n), replace=False))


def trustworthiness_of(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """Trustworthiness of the map rows Y of the rows X (cosine, via L2-normalised X)."""
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(X, Y, n_neighbors=max(1, min(k, len(X) // 2 - 1))))


def trustworthiness_sample(
    X: np.ndarray, Y: np.ndarray, k: int, sample: int = 2000, seed: int = 0
) -> float:
    """Trustworthiness of the map Y of X (cosine, via L2-normalised X) on a seeded subsample."""
    rows = sample_rows(len(X), sample, seed)
    return trustworthiness_of(X[rows], Y[rows], k)


def _free(M: np.ndarray) -> None:
    """Give a matrix's memory back now, though the caller still names it (it gave it up):
    a 1M x 768 float32 matrix is 3 GiB that UMAP's graph would otherwise sit on top of."""
    if M.flags.owndata:
        M.resize((0, M.shape[1]), refcheck=False)


class _Steps:
    """Times each step of one reduction into `timings` and gathers what it measured."""

    def __init__(self, X: np.ndarray, backend: ReduceBackend):
        self.timings: dict[str, float] = {}
        self.quality: dict[str, Any] = {
            "backend": backend.name,
            "engine": backend.engine,
            "n": int(X.shape[0]),
            "dim": int(X.shape[1]),
        }
        self._t0 = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[f"{step}_s"] = now - self._t0
        self._t0 = now


def reduce_embeddings(
    X: np.ndarray,
    settings: ReduceSettings | None = None,
    inplace: bool = False,
    update: MapUpdate | None = None,
    backend: ReduceBackend | None = None,
    ids: Sequence[str] | None = None,
) -> ReduceResult:
    """Reduce one model's embeddings.

    `ids`: the image id of each row. With them the reduction runs in the canonical row order
    (`reduce.order`: by a seeded hash of the id) and returns its results in X's, so the same
    ids and vectors give the same map, clusters and scores in any row order (X read in that
    order already, `order.read_canonical`, is not copied). Without them the rows are taken
    in the order given.
    `inplace=True` normalises X in its own memory: the caller gives X up, and it is left empty
    once the kNN graph is built (with PCA, UMAP and the clusters need only the scores, the
    graph and the trustworthiness sample, so the matrix's memory is freed before UMAP's).
    `update` lays the new map onto the last one (`reduce.stability`): aligned, or extended
    without recomputing it; it is handed the map in X's row order, and trustworthiness is
    measured on the map it returns.
    `backend`: a backend object to use instead of `settings.backend`'s (the torch backend on a
    CPU build of torch, in tests).
    """
    if X.shape[0] < 3:
        raise ValueError(f"need at least 3 embeddings to reduce, got {X.shape[0]}")
    s, chosen = (settings or ReduceSettings()).for_matrix(*X.shape)
    order = RowOrder.of(ids, len(X), s.rng_seed)
    be = backend or select_backend(s.backend)
    steps = _Steps(X, be)
    steps.quality["auto_settings"] = chosen
    for note in chosen:
        log.info("large matrix: %s", note)
    Xc = order.canonical(X)
    if Xc is not X and inplace:  # the caller gave X up: only the sorted copy is needed
        _free(X)
    Xn, Z = _project(Xc, s, be, steps, inplace or Xc is not X)
    recompute = update is None or update.recompute
    landmarks = None
    if recompute and s.landmarks:
        landmarks = Landmarks.build(Xn, Z, s, be.gpu, by_id=order.by_id)
        steps.done("landmark_knn")
    idx, dist = _graph(Xn, Z, s, be, steps)
    trust_rows = sample_rows(len(Xn), s.trust_sample, s.rng_seed)
    X_trust = Xn[trust_rows]
    if Z is not Xn and (inplace or Xn is not X):  # the matrix is ours: UMAP needs only Z
        _free(Xn)
    del X, Xc, Xn
    new_map = None
    if recompute:
        new_map = _layout(Z, idx, dist, s, be, steps, landmarks)
        new_map = order.back(new_map[0]), order.back(new_map[1])
    graph = order.back_graph(idx, dist)  # the scores below are computed in canonical order
    xy, labels = new_map if update is None else update(new_map, *graph)
    if update is not None:
        steps.done("update")
    trusted = order.caller_rows(trust_rows)
    steps.quality["trustworthiness"] = trustworthiness_of(X_trust, xy[trusted], s.k)
    steps.quality["trustworthiness_sample"] = len(trust_rows)
    if landmarks is not None:
        steps.quality["landmarks"]["trust_sample_share"] = landmarks.share_of(trust_rows)
    steps.done("trust")
    outlier, pagerank = order.back(knn_outlier_score(dist)), order.back(knn_pagerank(idx))
    result = ReduceResult(xy, *graph, labels, outlier, pagerank, steps.timings, steps.quality)
    _log_result(result)
    return result


def _layout(Z, idx, dist, s: ReduceSettings, be: ReduceBackend, steps: _Steps, landmarks=None):
    """(the 2-D UMAP map, its cluster labels) from the graph; with landmarks, UMAP and HDBSCAN
    run on them and every other row is placed from its kNN neighbours (reduce.landmarks)."""
    if landmarks is None:
        return _map_and_clusters(Z, idx, dist, s, be, steps)
    xy_l, labels_l = _map_and_clusters(landmarks.Z, landmarks.idx, landmarks.dist, s, be, steps)
    xy, labels, info = landmarks.place(xy_l, labels_l, idx, dist)
    steps.done("place")
    steps.quality["landmarks"] = info | {"knn": landmarks.knn}
    if landmarks.knn["recall"] < s.knn.target_recall:
        alert(log, "the landmarks' kNN recall %.3f is below reduce.knn.target_recall %.2f",
              landmarks.knn["recall"], s.knn.target_recall)  # fmt: skip
    return xy, labels


def _map_and_clusters(Z, idx, dist, s: ReduceSettings, be: ReduceBackend, steps: _Steps):
    xy = be.umap(Z, idx, dist, 2, s.layout)
    steps.done("umap")
    space = xy
    if s.cluster_space == "umap":
        space = be.umap(Z, idx, dist, s.cluster_dims, replace(s.layout, min_dist=0.0))
    labels = be.hdbscan(space, s.min_cluster_size, s.min_samples)
    steps.done("cluster")
    return xy, labels


def _project(X, s: ReduceSettings, be: ReduceBackend, steps: _Steps, inplace: bool):
    """(the L2-normalised input, the space the graph is searched in: PCA'd when asked)."""
    Xn = l2_normalise(X, inplace=inplace)
    Z = Xn
    if s.pca and s.pca < X.shape[1] and s.pca < X.shape[0]:
        Z, explained = be.pca(Xn, s.pca, s.rng_seed)
        Z = l2_normalise(Z, inplace=True)
        steps.quality["pca"] = {"components": int(s.pca), "explained_variance": explained}
    steps.done("pca")
    return Xn, Z


def _graph(Xn, Z, s: ReduceSettings, be: ReduceBackend, steps: _Steps):
    """The kNN graph, tuned to meet the recall target on a query sample, and its recall
    measured on another sample against exact search in the original space."""
    knn = s.knn
    idx, dist, method, tuning = TunedSearch(Xn, Z, s.k, knn, be.gpu, s.rng_seed).graph()
    steps.done("knn")
    recall = knn_recall(Xn, idx, knn.recall_sample, s.rng_seed, gpu=be.gpu)
    steps.quality["knn"] = {
        "method": method,
        "k": int(idx.shape[1]),
        "recall": recall,
        "recall_sample": int(min(knn.recall_sample, len(Xn))),
        "recall_against": "exact cosine search in the original space",
        "target_recall": knn.target_recall,
        "tuning": tuning,
    }
    if recall < knn.target_recall:
        alert(log, "kNN recall %.3f is below reduce.knn.target_recall %.2f (%s): the atlas's "
              "neighbours are approximate", recall, knn.target_recall,
              tuning["chosen"])  # fmt: skip
    steps.done("recall")
    return idx, dist


def _log_result(r: ReduceResult) -> None:
    q, labels = r.quality, r.cluster
    log.info(
        "reduced %d x %d on %s: kNN %s recall %.3f, trustworthiness %.3f, %d clusters, "
        "%.1f%% noise; %s",
        q["n"], q["dim"], q["backend"], q["knn"]["method"], q["knn"]["recall"],
        q["trustworthiness"], len(set(labels.tolist()) - {-1}),
        100 * float((labels == -1).mean()),
        ", ".join(f"{k} {v:.2f}" for k, v in r.timings.items()),
    )  # fmt: skip
