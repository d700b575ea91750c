"""kNN graph primitives: how far two graphs over the same images agree, point by point, and
each row's own index first (the order every search hands UMAP).

The atlas colours each image by its cross-model agreement and the analyses average it, so these
primitives sit with the graphs they compare (later stages import them from here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _match_counts(a: np.ndarray, b: np.ndarray, block: int = 65536) -> np.ndarray:
    """Per row, how many of a's valid neighbours (>= 0, self column excluded) appear in b's."""
    out = np.empty(len(a), np.int64)
    for s in range(0, len(a), block):
        aa, bb = a[s : s + block, 1:], b[s : s + block, 1:]
        hit = (aa[:, :, None] == bb[:, None, :]) & (aa[:, :, None] >= 0)
        out[s : s + block] = hit.any(axis=2).sum(axis=1)
    return out


def knn_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Jaccard of two (n, k) neighbour arrays in one id space (self first; -1 = none)."""
    inter = _match_counts(a, b)
    size_a = (a[:, 1:] >= 0).sum(1)
    size_b = (b[:, 1:] >= 0).sum(1)
    union = size_a + size_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def knn_kept(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the fraction of a's neighbours that b also has."""
    size_a = (a[:, 1:] >= 0).sum(1)
    return np.where(size_a > 0, _match_counts(a, b) / np.maximum(size_a, 1), 1.0)


def agreement(neighbours: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per model m and point i: the mean over the other models of the share of m's neighbours
    of i that they keep (1 = every other model sees the same neighbourhood)."""
    out = {}
    for m, a in neighbours.items():
        others = [knn_kept(a, b) for o, b in neighbours.items() if o != m]
        out[m] = np.mean(others, axis=0).astype(np.float32)
    return out


def aligned_neighbours(table, common: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """A reduced table's neighbours as an (n_common, k) array of positions in `common`
    (-1 where a neighbour is not in `common`), and the table rows in `common` order."""
    ids = pd.Index(table.column("image_id").to_pylist())
    nb = table.column("neighbors").combine_chunks().field("ids")
    k = int(np.diff(nb.offsets.to_numpy()).max()) if len(nb) else 0
    local = nb.flatten().to_numpy().reshape(len(ids), k)
    local_to_common = common.get_indexer(ids)  # -1 for ids outside `common`
    rows = ids.get_indexer(common)
    return local_to_common[local[rows]], rows


def self_first(idx: np.ndarray, dist: np.ndarray) -> None:
    """UMAP's precomputed_knn wants each row's own index in column 0 (ties may displace it)."""
    rows = np.arange(len(idx))
    for r in np.flatnonzero(idx[:, 0] != rows):
        where = np.flatnonzero(idx[r] == r)
        pos = int(where[0]) if len(where) else idx.shape[1] - 1  # missing: drop the last
        idx[r] = np.concatenate([[r], np.delete(idx[r], pos)])
        dist[r] = np.concatenate([[0.0], np.delete(dist[r], pos)])
    dist[:, 0] = 0.0
