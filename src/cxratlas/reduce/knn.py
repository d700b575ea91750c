"""Exact cosine kNN with FAISS inner product on L2-normalised vectors."""

from __future__ import annotations

import numpy as np


def l2_normalise(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def exact_knn(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of each row of L2-normalised `X`, the row itself first.

    Returns (indices int64 (n, k), cosine distances float32 (n, k)), sorted by distance.
    Duplicated vectors can tie with the query; the row itself is forced into column 0,
    as UMAP's precomputed_knn expects.
    """
    import faiss

    n = X.shape[0]
    k = min(k, n)
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(X)
    sims, idx = index.search(X, k)
    dist = np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32)
    rows = np.arange(n)
    not_first = idx[:, 0] != rows
    for r in np.flatnonzero(not_first):
        where = np.flatnonzero(idx[r] == r)
        pos = int(where[0]) if len(where) else k - 1  # self missing among ties: drop the last
        idx[r] = np.concatenate([[r], np.delete(idx[r], pos)])
        dist[r] = np.concatenate([[0.0], np.delete(dist[r], pos)])
    dist[:, 0] = 0.0  # a point's distance to itself, without float round-off
    return idx.astype(np.int64), dist
