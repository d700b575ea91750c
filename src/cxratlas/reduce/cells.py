"""kNN in k-means cells, scored exactly by matrix products: the CPU search for large matrices.

The vectors are partitioned into k-means cells of about `cell_size` vectors (clustered on the
PCA space when there is one: the partition only decides which vectors are compared). Each
cell's vectors are then compared, exactly and in the full space, with every vector of the
`probe` cells nearest its centroid: one matrix product per cell. Distances are exact; only a
neighbour outside the probed cells can be missed, and the recall target raises `probe` until
a query sample shows few enough are (tuning.py). Why not FAISS's indexes: at 100k x 768 on 2 cores
HNSW on 128 PCA components took 37 s for recall 0.975 and an IVF scan 15 s for 0.978, where
this takes 4 s for 0.98 — a matrix product keeps the cores busy, a one-query scan does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxratlas.reduce.neighbours import self_first

CANDIDATE_BLOCK = 32768  # candidates scored per product: bounds the scratch at any `probe`
QUERY_BLOCK = 1024  # queries per product: k-means may make a cell of near-duplicates large


@dataclass
class CellIndex:
    """Which k-means cell each vector is in, and each cell's nearest cells (itself first)."""

    cell_of: np.ndarray  # (n,) cell of each row
    order: np.ndarray  # row positions sorted by cell
    starts: np.ndarray  # (cells + 1,) where each cell's rows begin in `order`
    nearest: np.ndarray  # (cells, up to max_probe) cells by centroid similarity, itself first

    @classmethod
    def build(cls, Z: np.ndarray, cell_size: int, max_probe: int, seed: int) -> CellIndex:
        """Spherical k-means on the L2-normalised rows of Z (FAISS trains it on at most 64
        rows per cell), then every row assigned to its nearest centroid; each cell's
        `max_probe` nearest cells are kept (every cell where there are fewer)."""
        import faiss

        Z = np.ascontiguousarray(Z, np.float32)
        cells = int(max(1, min(len(Z) // max(cell_size, 1), len(Z))))
        km = faiss.Kmeans(Z.shape[1], cells, niter=10, seed=seed, spherical=True,
                          max_points_per_centroid=64, min_points_per_centroid=1)  # fmt: skip
        km.train(Z)
        cell_of = km.index.search(Z, 1)[1][:, 0]
        centroids = km.centroids / np.maximum(
            np.linalg.norm(km.centroids, axis=1, keepdims=True), 1e-12
        )
        nearest = faiss.knn(centroids, centroids, min(cells, max_probe),
                            metric=faiss.METRIC_INNER_PRODUCT)[1]  # fmt: skip
        nearest = _self_first_cells(nearest)
        order = np.argsort(cell_of, kind="stable")
        starts = np.searchsorted(cell_of[order], np.arange(cells + 1))
        return cls(cell_of, order, starts, nearest)

    @property
    def cells(self) -> int:
        return len(self.starts) - 1

    def members(self, cells: np.ndarray) -> np.ndarray:
        return np.concatenate([self.order[self.starts[c] : self.starts[c + 1]] for c in cells])

    def search(
        self, X: np.ndarray, rows: np.ndarray | None, k: int, probe: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(indices, cosine distances) of the k nearest of L2-normalised X among the rows of
        each query's `probe` nearest cells, for the query rows `rows` (None: every row, each
        row's own index then first, as `knn.search_blocks` gives it)."""
        queries = np.arange(len(X)) if rows is None else np.asarray(rows)
        k = min(k, len(X))
        idx = np.empty((len(queries), k), np.int64)
        dist = np.empty((len(queries), k), np.float32)
        where = np.argsort(self.cell_of[queries], kind="stable")  # queries grouped by cell
        cell_sorted = self.cell_of[queries][where]
        bounds = np.flatnonzero(np.diff(cell_sorted)) + 1
        for group in np.split(where, bounds):
            if not len(group):
                continue
            c = int(self.cell_of[queries[group[0]]])
            cand = self.members(self.nearest[c, : max(1, probe)])
            for start in range(0, len(group), QUERY_BLOCK):
                part = group[start : start + QUERY_BLOCK]
                idx[part], dist[part] = _best(X, queries[part], cand, k)
        if rows is None:
            self_first(idx, dist)
        return idx, dist

    @property
    def max_probe(self) -> int:
        """The most cells one search can probe (the width of the `nearest` table)."""
        return self.nearest.shape[1]


def _self_first_cells(nearest: np.ndarray) -> np.ndarray:
    """Each cell probes itself first, even where two centroids coincide."""
    own = np.arange(len(nearest))[:, None]
    rest = np.where(nearest == own, -1, nearest)
    out = np.concatenate([own, rest], axis=1)
    keep = out >= 0
    return np.stack([row[m][: nearest.shape[1]] for row, m in zip(out, keep, strict=True)])


def _best(X: np.ndarray, q: np.ndarray, cand: np.ndarray, k: int):
    """The k most similar candidates of each query row: FAISS's exact search (a BLAS product
    and a heap per query; numpy's argpartition took longer than the product), over blocks of
    candidates merged as they come; a query with fewer than k candidates is padded with
    itself at distance 2."""
    import faiss

    Xq = X[q]
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.empty((len(q), 0), np.int64)
    for start in range(0, len(cand), CANDIDATE_BLOCK):
        block = cand[start : start + CANDIDATE_BLOCK]
        sims, at = faiss.knn(Xq, X[block], min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        best_s = np.concatenate([best_s, sims], axis=1)
        best_i = np.concatenate([best_i, block[at]], axis=1)
        if best_s.shape[1] > k:
            top = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_i, top, 1)
    short = k - best_s.shape[1]
    if short > 0:
        best_s = np.concatenate([best_s, np.full((len(q), short), -np.inf, np.float32)], 1)
        best_i = np.concatenate([best_i, np.repeat(q[:, None], short, 1)], 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    return best_i, np.clip(1.0 - np.where(np.isfinite(best_s), best_s, -1.0), 0.0, 2.0)
