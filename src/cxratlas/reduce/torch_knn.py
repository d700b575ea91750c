"""Exact cosine kNN with torch: blocked matrix products and top-k, then an exact float32
re-ranking of the candidates. The GPU engine where FAISS-GPU is absent (the H200 check machine
has torch, not RAPIDS or FAISS), and the GPU's recall reference; it runs on the CPU too, where a
test holds it equal to FAISS's exact search.

Why the re-rank: on a GPU the block products run in TF32/bf16-speed kernels whose rounding can
swap near-tied neighbours, so each block keeps `k + slack` candidates and their similarities are
recomputed in float32 before the final top-k.
"""

from __future__ import annotations

import numpy as np


def torch_device(gpu: bool) -> str:
    import torch

    if gpu and not torch.cuda.is_available():
        raise RuntimeError("torch kNN on the GPU asked for, but torch sees no CUDA device")
    return "cuda" if gpu else "cpu"


def torch_exact_knn(
    queries: np.ndarray,
    base: np.ndarray,
    k: int,
    gpu: bool = False,
    query_block: int = 8192,
    base_block: int = 262_144,
    slack: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """(similarities float32 (q, k), indices int64 (q, k)) of the k largest inner products of
    each query row with the base rows, best first: the same contract as `faiss.knn`.

    The base is streamed in blocks (a 1M x 768 float32 base is 3 GiB: it fits an H200, and the
    blocks bound the (query_block x base_block) score matrix). On a GPU the products may run in
    TF32; the final order is decided in exact float32 on the candidates."""
    import torch

    dev = torch_device(gpu)
    k = min(k, len(base))
    keep = min(k + slack, len(base))
    b_all = torch.from_numpy(np.ascontiguousarray(base, np.float32)).to(dev)
    out_s = np.empty((len(queries), k), np.float32)
    out_i = np.empty((len(queries), k), np.int64)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # candidates only: the re-rank is exact
    try:
        for qs in range(0, len(queries), query_block):
            q = torch.from_numpy(np.ascontiguousarray(queries[qs : qs + query_block], np.float32))
            q = q.to(dev)
            cand = _candidates(q, b_all, keep, base_block)
            for rs in range(0, len(q), 1024):  # bounds the (rows, candidates, dim) gather
                sims, idx = _rerank(q[rs : rs + 1024], b_all, cand[rs : rs + 1024], k)
                out_s[qs + rs : qs + rs + len(sims)] = sims
                out_i[qs + rs : qs + rs + len(sims)] = idx
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return out_s, out_i


def _candidates(q, base, keep: int, block: int):
    """Per query, the indices of the `keep` best base rows, merged over base blocks."""
    import torch

    best_s = best_i = None
    for off in range(0, base.shape[0], block):
        part = base[off : off + block]
        top_s, top_i = torch.topk(q @ part.T, min(keep, part.shape[0]), dim=1)
        top_i = top_i + off
        if best_s is not None:
            top_s, top_i = torch.cat([best_s, top_s], 1), torch.cat([best_i, top_i], 1)
        best_s, pos = torch.topk(top_s, min(keep, top_s.shape[1]), dim=1)
        best_i = torch.gather(top_i, 1, pos)
    return best_i


def _rerank(q, base, cand, k: int):
    """Exact float32 similarities (elementwise products: no TF32) of each query with its
    candidates, best k first; ties keep the lower index, as FAISS does."""
    import torch

    sims = (base[cand] * q[:, None, :]).sum(-1)
    by_index = torch.argsort(cand, dim=1, stable=True)
    sims, cand = torch.gather(sims, 1, by_index), torch.gather(cand, 1, by_index)
    order = torch.argsort(-sims, dim=1, stable=True)[:, :k]
    return (torch.gather(sims, 1, order).cpu().numpy(),
            torch.gather(cand, 1, order).cpu().numpy())  # fmt: skip
