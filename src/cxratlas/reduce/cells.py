"""kNN in k-means cells, scored exactly by matrix products: the CPU search for large matrices.

The vectors are partitioned into k-means cells of about `cell_size` vectors (clustered on the
PCA space when there is one: the partition only decides which vectors are compared), and each
cell's vectors are compared, exactly and in the full space, with those of its partner cells:
- one way, a cell's partners are the `probe` cells nearest its centroid, scored by FAISS's exact
  search, one product per cell;
- both ways, two cells are partners when either is among the other's `probe` nearest, and one
  product serves the pair: its rows update the first cell's neighbours, its columns the
  second's (FAISS's heaps keep each vector's best k).
Only a neighbour outside the partner cells can be missed, and the recall target raises `probe`
until a query sample shows few enough are; the tuner prices both ways and takes the cheaper
(tuning.py). Both ways wins where a vector's neighbours are spread over many cells: at 1M on the
isotropic generator (40 cells a cluster) one way needed 29 cells and 19G vector pairs for recall
0.96 (260 s), both ways 23 cells and 10G pairs for 0.965 (156 s). Where few cells are probed
they score about as many pairs, and one way costs less a pair (no columns to transpose and
offer): at 100k, 3.6 s against 4.5 s. Why not FAISS's indexes: at 100k x 768 on 2 cores HNSW on
128 PCA components took 37 s for recall 0.975 and an IVF scan 15 s for 0.978, where this takes
4 s for 0.98 — a matrix product keeps the cores busy, a one-query scan does not.
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

    def partners(self, probe: int, both_ways: bool = False):
        """(cells x cells) sparse: the cells each cell is compared with: its `probe` nearest,
        and (both ways) every cell that has it among its `probe` nearest."""
        import scipy.sparse as sp

        near = self.nearest[:, : max(1, probe)]
        rows = np.repeat(np.arange(self.cells), near.shape[1])
        out = sp.csr_matrix((np.ones(rows.size, np.int8), (rows, near.ravel())),
                            shape=(self.cells, self.cells))  # fmt: skip
        out = (out + out.T).tocsr() if both_ways else out
        out.sort_indices()
        return out

    def pairs(self, probe: int, both_ways: bool) -> int:
        """Vector pairs a search scores: one way, each cell with its partners; both ways,
        each pair of partners once."""
        sizes = np.diff(self.starts).astype(np.int64)
        m = self.partners(probe, both_ways).tocoo()
        keep = m.col >= m.row if both_ways else slice(None)
        return int((sizes[m.row[keep]] * sizes[m.col[keep]]).sum())

    def search(
        self, X: np.ndarray, rows: np.ndarray | None, k: int, probe: int, both_ways: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(indices, cosine distances) of the k nearest of L2-normalised X among the rows of
        each query's partner cells (`partners`), for the query rows `rows` (None: every row,
        each row's own index then first, as `knn.search_blocks` gives it); a query with fewer
        than k candidates is padded with itself at distance 2."""
        k = min(k, len(X))
        if rows is None and both_ways:
            return _search_all(self, X, k, probe)
        queries = np.arange(len(X)) if rows is None else np.asarray(rows)
        idx = np.empty((len(queries), k), np.int64)
        dist = np.empty((len(queries), k), np.float32)
        partners = self.partners(probe, both_ways)
        where = np.argsort(self.cell_of[queries], kind="stable")  # queries grouped by cell
        cell_sorted = self.cell_of[queries][where]
        bounds = np.flatnonzero(np.diff(cell_sorted)) + 1
        for group in np.split(where, bounds):
            if not len(group):
                continue
            c = int(self.cell_of[queries[group[0]]])
            cand = self.members(partners.indices[partners.indptr[c] : partners.indptr[c + 1]])
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


class _Heaps:
    """Each row's best k (similarity, position) so far, kept by FAISS's heaps over arrays
    indexed by position in cell order, so a cell's rows are one contiguous range."""

    def __init__(self, n: int, k: int):
        import faiss

        self.sims = np.empty((n, k), np.float32)
        self.ids = np.empty((n, k), np.int64)
        self.heap = faiss.float_minheap_array_t()  # a min-heap keeps the largest
        self.heap.nh, self.heap.k = n, k
        self.heap.val, self.heap.ids = faiss.swig_ptr(self.sims), faiss.swig_ptr(self.ids)
        self.heap.heapify()

    def add(self, first: int, S: np.ndarray, positions: np.ndarray) -> None:
        """Offer rows first .. first + len(S) the columns of S, which are `positions`."""
        import faiss

        S = np.ascontiguousarray(S)
        self.heap.addn_with_ids(S.shape[1], faiss.swig_ptr(S), faiss.swig_ptr(positions), 0,
                                first, S.shape[0])  # fmt: skip

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        self.heap.reorder()  # best first
        return self.ids, self.sims


def _search_all(cells: CellIndex, X: np.ndarray, k: int, probe: int):
    """Every row's k nearest among its partner cells, each pair of partners scored once.
    Cells go in order; a cell is multiplied with its partners numbered after it (and itself),
    a group of partners at a time (CANDIDATE_BLOCK rows), its rows in QUERY_BLOCK blocks."""
    partners, starts, order = cells.partners(probe, True), cells.starts, cells.order
    heaps = _Heaps(len(X), k)
    for a in range(cells.cells):
        later = partners.indices[partners.indptr[a] : partners.indptr[a + 1]]
        later = later[(later >= a) & (starts[later + 1] > starts[later])]
        for group in _groups(later, starts, CANDIDATE_BLOCK):
            positions = np.concatenate([np.arange(starts[b], starts[b + 1]) for b in group])
            Y = X[order[positions]]
            for q0 in range(starts[a], starts[a + 1], QUERY_BLOCK):
                q1 = min(q0 + QUERY_BLOCK, starts[a + 1])
                S = X[order[q0:q1]] @ Y.T
                heaps.add(q0, S, positions)
                _offer_columns(heaps, S, group, starts, a, np.arange(q0, q1, dtype=np.int64))
    positions, sims = heaps.sorted()
    return _in_input_order(positions, sims, order)


def _groups(cells_: np.ndarray, starts: np.ndarray, most: int):
    """`cells_` in runs of at most `most` rows (a larger cell alone)."""
    group, rows = [], 0
    for c in cells_:
        size = int(starts[c + 1] - starts[c])
        if group and rows + size > most:
            yield group
            group, rows = [], 0
        group.append(int(c))
        rows += size
    if group:
        yield group


def _offer_columns(heaps: _Heaps, S: np.ndarray, group, starts, a: int, rows: np.ndarray):
    """The same product read by columns: each partner cell's rows are offered the query rows
    (the cell itself is already done by rows)."""
    offset = 0
    for b in group:
        size = int(starts[b + 1] - starts[b])
        if b != a:
            heaps.add(int(starts[b]), S[:, offset : offset + size].T, rows)
        offset += size


def _in_input_order(positions: np.ndarray, sims: np.ndarray, order: np.ndarray):
    """Positions in cell order back to row indices, rows back to input order, the row itself
    first; a row with fewer than k candidates (a heap slot never filled) is padded with
    itself at distance 2. In blocks of rows: full-size temporaries cost 0.1 x the matrix."""
    idx, dist = np.empty_like(positions), np.empty_like(sims)
    for start in range(0, len(order), QUERY_BLOCK * 64):
        rows = order[start : start + QUERY_BLOCK * 64]  # the input rows of these positions
        found = positions[start : start + len(rows)]
        empty = found < 0
        idx[rows] = np.where(empty, rows[:, None], order[np.where(empty, 0, found)])
        sims_ = np.where(empty, -1.0, sims[start : start + len(rows)])
        dist[rows] = np.clip(1.0 - sims_, 0.0, 2.0)
    self_first(idx, dist)
    return idx, dist
