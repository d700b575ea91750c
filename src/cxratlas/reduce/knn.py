"""Cosine kNN graphs (inner product on L2-normalised vectors), exact or approximate.

Exact search up to `exact_max` vectors; past it k-means cells scored by matrix products on the
CPU (`cells.py`) or FAISS IVF on the GPU (FAISS has no GPU HNSW; HNSW stays available by name).
Whatever the method, the recall against exact search is measured on a sample of queries, in
the space the caller names (the original vectors, so PCA's loss counts too).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from cxratlas.reduce.neighbours import self_first

log = logging.getLogger(__name__)


def l2_normalise(X: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Rows scaled to unit length (float32); `inplace` reuses X's memory when it is float32."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    out = X if inplace else X.copy()
    for start in range(0, len(out), 65536):  # blocks: no second full-size temporary
        block = out[start : start + 65536]
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
    return out


@dataclass
class KnnSettings:
    method: str = "auto"  # auto | exact | cells | hnsw | ivf
    exact_max: int = 50_000
    cell_size: int = 500  # cells: vectors per k-means cell
    cell_probe: int = 4  # cells: each cell is compared with this many nearest (tuned up or down)
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None  # None: 4 * sqrt(n)
    ivf_nprobe: int = 32
    recall_sample: int = 1000
    refine: int = 3  # with PCA: search k * refine candidates, re-rank them in the full space
    target_recall: float = 0.95  # effort rises until a query sample meets it (0: never tune)
    max_ef_search: int = 1024  # the ladder's limits (tuning.py)
    max_refine: int = 24

    def resolve(self, n: int, gpu: bool) -> str:
        if self.method != "auto":
            return self.method
        if gpu and not faiss_gpu():
            return "exact"  # torch: exact on the GPU is fast enough at millions
        return "exact" if n <= self.exact_max else ("ivf" if gpu else "cells")


def faiss_gpu() -> bool:
    """Whether FAISS was built with GPUs and sees one (else torch is the GPU kNN engine)."""
    try:
        import faiss

        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except ImportError:
        return False


def exact_search(
    queries: np.ndarray, base: np.ndarray, k: int, gpu: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search of `queries` in `base`, with no index (no copy of `base`);
    on a GPU with FAISS-GPU, else with torch (`torch_knn`)."""
    if gpu and not faiss_gpu():
        from cxratlas.reduce.torch_knn import torch_exact_knn

        return torch_exact_knn(queries, base, k, gpu=True)
    import faiss

    q = np.ascontiguousarray(queries, np.float32)
    b = np.ascontiguousarray(base, np.float32)
    if gpu:
        res = faiss.StandardGpuResources()
        return faiss.knn_gpu(res, q, b, k, metric=faiss.METRIC_INNER_PRODUCT)
    return faiss.knn(q, b, k, metric=faiss.METRIC_INNER_PRODUCT)


def build_index(X: np.ndarray, method: str, s: KnnSettings, gpu: bool, seed: int):
    """The FAISS index an approximate method searches (HNSW on the CPU, IVF on either)."""
    import faiss

    n, d = X.shape
    if method == "hnsw":
        if gpu:
            raise ValueError("reduce.knn.method hnsw runs on the CPU only; use ivf on a GPU")
        index = faiss.IndexHNSWFlat(d, s.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = s.hnsw_ef_construction
        index.hnsw.efSearch = max(s.hnsw_ef_search, 1)
    elif method == "ivf":
        nlist = s.ivf_nlist or max(1, min(n // 39, int(4 * math.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        train = X
        if n > 64 * nlist:  # FAISS's own advice: ~40-256 points per list are enough to train
            rng = np.random.default_rng(seed)
            train = X[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        index.train(train)
        index.nprobe = min(s.ivf_nprobe, nlist)
    else:
        raise ValueError(
            f"reduce.knn.method must be auto, exact, cells, hnsw or ivf, not {method!r}"
        )
    if gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(X)
    return index


def search_blocks(
    X: np.ndarray, rows: np.ndarray | None, k: int, index=None, gpu: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine distances) of the k nearest rows of X for the query rows `rows` (None:
    every row, then each row's own index is put first), with `index` or by exact search."""
    n = X.shape[0]
    queries = np.arange(n) if rows is None else np.asarray(rows)
    k = min(k, n)
    idx = np.empty((len(queries), k), np.int64)
    dist = np.empty((len(queries), k), np.float32)
    # torch keeps the base on the GPU and blocks the queries itself: one call, one upload
    step = len(queries) if (index is None and gpu and not faiss_gpu()) else 16384
    for start in range(0, len(queries), max(step, 1)):  # blocks bound the scratch memory
        block = X[queries[start : start + step]]
        if index is None:
            sims, found = exact_search(block, X, k, gpu)
        else:
            sims, found = index.search(block, k)
        idx[start : start + len(found)] = found
        dist[start : start + len(found)] = np.clip(1.0 - sims, 0.0, 2.0)
    bad = idx < 0  # an approximate index may return fewer than k hits
    if bad.any():
        idx[bad] = np.broadcast_to(queries[:, None], idx.shape)[bad]
        dist[bad] = 2.0
    if rows is None:
        self_first(idx, dist)
    return idx, dist


def knn_graph(
    X: np.ndarray,
    k: int,
    settings: KnnSettings | None = None,
    gpu: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """k nearest neighbours of each row of L2-normalised X, the row itself first, with the
    configured effort (no recall target: `tuning.TunedSearch` adds it).

    Returns (indices int64 (n, k), cosine distances float32 (n, k), the method used).
    """
    s = settings or KnnSettings()
    method = s.resolve(X.shape[0], gpu)
    if method == "cells":
        from cxratlas.reduce.cells import CellIndex

        idx, dist = CellIndex.build(X, s.cell_size, s.cell_probe, seed).search(
            X, None, k, s.cell_probe
        )
        return idx, dist, method
    index = None if method == "exact" else build_index(X, method, s, gpu, seed)
    idx, dist = search_blocks(X, None, k, index, gpu)
    return idx, dist, method


def knn_recall(
    X_ref: np.ndarray, idx: np.ndarray, sample: int = 1000, seed: int = 0, gpu: bool = False
) -> float:
    """Mean recall@k of the graph `idx` against exact search in `X_ref` (L2-normalised) for a
    seeded sample of query rows; the query itself is left out of both sides."""
    n, k = idx.shape
    if k < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, min(sample, n), replace=False))
    _, exact = exact_search(X_ref[queries], X_ref, k, gpu)
    return sample_recall(idx[queries], exact, queries)


def sample_recall(idx: np.ndarray, truth: np.ndarray, queries: np.ndarray) -> float:
    """Mean recall@k of graph rows against exact rows, the query itself left out."""
    k = truth.shape[1]
    hits = sum(len((set(r.tolist()) - {q}) & (set(t.tolist()) - {q}))
               for q, r, t in zip(queries, idx, truth, strict=True))  # fmt: skip
    return hits / (len(queries) * max(k - 1, 1))


def refine_in_full_space(
    X: np.ndarray,
    candidates: np.ndarray,
    k: int,
    block: int = 1024,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-rank each query's candidate neighbours (found in a reduced space) by exact cosine
    distance in the full L2-normalised space X, keeping the best k; blocks bound the memory.
    `rows`: the query rows of `candidates` (None: every row of X, in order)."""
    queries = np.arange(len(X)) if rows is None else np.asarray(rows)
    n = len(queries)
    k = min(k, candidates.shape[1])
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    for start in range(0, n, block):
        cand = candidates[start : start + block]
        sims = np.einsum("bd,bcd->bc", X[queries[start : start + len(cand)]], X[cand])
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        idx[start : start + len(cand)] = np.take_along_axis(cand, order, 1)
        dist[start : start + len(cand)] = np.clip(1.0 - np.take_along_axis(sims, order, 1), 0, 2)
    if rows is None:
        self_first(idx, dist)
    return idx, dist
