"""Outlier scores from the kNN graph, at no extra search cost."""

from __future__ import annotations

import numpy as np


def knn_outlier_score(knn_dist: np.ndarray) -> np.ndarray:
    """Mean cosine distance to the k neighbours (the row itself, column 0, excluded).

    Large for images unlike any other; a small group of similar oddities still scores high
    as long as it is smaller than k.
    """
    if knn_dist.shape[1] < 2:
        return np.zeros(knn_dist.shape[0], np.float32)
    return knn_dist[:, 1:].mean(axis=1).astype(np.float32)


def knn_pagerank(knn_idx: np.ndarray, damping: float = 0.85, iters: int = 50) -> np.ndarray:
    """PageRank on the kNN graph: Embedding Atlas uses it to pick representative thumbnails."""
    from scipy.sparse import csr_matrix

    n, k = knn_idx.shape
    if n == 0:
        return np.zeros(0, np.float32)
    rows = np.repeat(np.arange(n), k - 1)
    cols = knn_idx[:, 1:].ravel()
    # Edge i -> j for each neighbour j of i; rank flows along it.
    M = csr_matrix((np.full(len(rows), 1.0 / max(k - 1, 1)), (cols, rows)), shape=(n, n))
    r = np.full(n, 1.0 / n)
    for _ in range(iters):
        r = (1 - damping) / n + damping * (M @ r)
    return (r / r.sum()).astype(np.float32)
