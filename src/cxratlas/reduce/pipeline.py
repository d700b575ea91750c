"""One model's reduction, run once: [PCA] -> kNN graph -> UMAP map -> clusters -> outliers.

The kNN graph is built once and reused by UMAP, the atlas neighbours and the outlier score.
Every run measures the graph's recall against exact search in the original space (so the loss
from PCA and from approximate search both count) and the map's trustworthiness, on samples.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxratlas.reduce.backend import select_backend
from cxratlas.reduce.knn import (
    KnnSettings,
    knn_graph,
    knn_recall,
    l2_normalise,
    refine_in_full_space,
)
from cxratlas.reduce.outliers import knn_outlier_score, knn_pagerank

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


def trustworthiness_sample(
    X: np.ndarray, Y: np.ndarray, k: int, sample: int = 2000, seed: int = 0
) -> float:
    """Trustworthiness of the map Y of X (cosine, via L2-normalised X) on a seeded subsample."""
    from sklearn.manifold import trustworthiness

    n = len(X)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(sample, n), replace=False))
    k = max(1, min(k, len(rows) // 2 - 1))
    return float(trustworthiness(X[rows], Y[rows], n_neighbors=k))


def reduce_embeddings(
    X: np.ndarray,
    k: int = 15,
    seed: int | None = 42,
    min_dist: float = 0.1,
    n_epochs: int | None = None,
    cluster_space: str = "map",
    cluster_dims: int = 8,
    min_cluster_size: int = 10,
    min_samples: int | None = None,
    pca: int | None = None,
    knn: KnnSettings | None = None,
    backend: str = "auto",
    init: str = "spectral",
    trust_sample: int = 2000,
    inplace: bool = False,
) -> ReduceResult:
    """Reduce one model's embeddings. `seed=None` lets UMAP run in parallel (not reproducible).

    `inplace=True` normalises X in its own memory (the caller gives it up), which keeps the peak
    near the matrix plus the graph.
    """
    if X.shape[0] < 3:
        raise ValueError(f"need at least 3 embeddings to reduce, got {X.shape[0]}")
    if cluster_space not in ("map", "umap"):
        raise ValueError(f"reduce.cluster.space must be 'map' or 'umap', not {cluster_space!r}")
    be = select_backend(backend)
    knn = knn or KnnSettings()
    rng_seed = 0 if seed is None else seed
    t: dict[str, float] = {}
    q: dict[str, Any] = {"backend": be.name, "n": int(X.shape[0]), "dim": int(X.shape[1])}
    t0 = time.perf_counter()
    Xn = l2_normalise(X, inplace=inplace)
    Z = Xn
    if pca and pca < X.shape[1] and pca < X.shape[0]:
        Z, explained = be.pca(Xn, pca, rng_seed)
        Z = l2_normalise(Z, inplace=True)
        q["pca"] = {"components": int(pca), "explained_variance": explained}
    t["pca_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if Z is not Xn and knn.refine > 1:
        # candidates from the reduced space, distances and order from the full one
        cand, _, method = knn_graph(Z, min(len(Z), k * knn.refine), knn, be.gpu, rng_seed)
        idx, dist = refine_in_full_space(Xn, cand, min(k, len(Z)))
        method += f"+refine{knn.refine}"
    else:
        idx, dist, method = knn_graph(Z, k, knn, gpu=be.gpu, seed=rng_seed)
    t["knn_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    q["knn"] = {
        "method": method,
        "k": int(idx.shape[1]),
        "recall": knn_recall(Xn, idx, knn.recall_sample, rng_seed, gpu=be.gpu),
        "recall_sample": int(min(knn.recall_sample, len(Xn))),
        "recall_against": "exact cosine search in the original space",
    }
    t["recall_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    xy = be.umap(Z, idx, dist, 2, min_dist, n_epochs, seed, init)
    t["umap_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    q["trustworthiness"] = trustworthiness_sample(Xn, xy, k, trust_sample, rng_seed)
    q["trustworthiness_sample"] = int(min(trust_sample, len(Xn)))
    t["trust_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    space = xy
    if cluster_space == "umap":
        space = be.umap(Z, idx, dist, cluster_dims, 0.0, n_epochs, seed, init)
    labels = be.hdbscan(space, min_cluster_size, min_samples)
    t["cluster_s"] = time.perf_counter() - t0
    result = ReduceResult(xy, idx, dist, labels, knn_outlier_score(dist), knn_pagerank(idx), t, q)
    log.info(
        "reduced %d x %d on %s: kNN %s recall %.3f, trustworthiness %.3f, %d clusters, "
        "%.1f%% noise; %s",
        X.shape[0],
        X.shape[1],
        be.name,
        method,
        q["knn"]["recall"],
        q["trustworthiness"],
        len(set(labels.tolist()) - {-1}),
        100 * float((labels == -1).mean()),
        ", ".join(f"{k} {v:.2f}" for k, v in t.items()),
    )
    return result
