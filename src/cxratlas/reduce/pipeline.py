"""One model's reduction, run once: the kNN graph is computed once and reused by every step."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .cluster import hdbscan_labels
from .knn import exact_knn, l2_normalise
from .layout import umap_on_graph
from .outliers import knn_outlier_score, knn_pagerank

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


def reduce_embeddings(
    X: np.ndarray,
    k: int = 15,
    seed: int = 42,
    min_dist: float = 0.1,
    n_epochs: int | None = None,
    cluster_space: str = "map",
    cluster_dims: int = 8,
    min_cluster_size: int = 10,
    min_samples: int | None = None,
) -> ReduceResult:
    """L2-normalise, exact kNN, UMAP 2-D (cosine) on that graph, HDBSCAN, outlier score."""
    if X.shape[0] < 3:
        raise ValueError(f"need at least 3 embeddings to reduce, got {X.shape[0]}")
    t = {}
    t0 = time.perf_counter()
    Xn = l2_normalise(X)
    idx, dist = exact_knn(Xn, k)
    t["knn_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    xy = umap_on_graph(Xn, idx, dist, 2, min_dist, n_epochs, seed)
    t["umap_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if cluster_space == "umap":
        space = umap_on_graph(Xn, idx, dist, cluster_dims, 0.0, n_epochs, seed)
    elif cluster_space == "map":
        space = xy
    else:
        raise ValueError(f"reduce.cluster.space must be 'map' or 'umap', not {cluster_space!r}")
    labels = hdbscan_labels(space, min_cluster_size, min_samples)
    t["cluster_s"] = time.perf_counter() - t0
    result = ReduceResult(xy, idx, dist, labels, knn_outlier_score(dist), knn_pagerank(idx), t)
    log.info(
        "reduced %d x %d: %d clusters, %.1f%% noise; %s",
        X.shape[0],
        X.shape[1],
        len(set(labels.tolist()) - {-1}),
        100 * float((labels == -1).mean()),
        ", ".join(f"{k} {v:.2f}" for k, v in t.items()),
    )
    return result
