"""UMAP's layout with torch alone, for a GPU node without RAPIDS (runs on the CPU build too).

The objective is umap-learn's: the fuzzy simplicial set of the given kNN graph (umap-learn's own
`fuzzy_simplicial_set`, on the CPU), edges sampled in proportion to their weight, an attractive
move along each sampled edge, five negative samples per edge, `a` and `b` fitted from
`min_dist`, a learning rate falling linearly to 0 and gradients clipped at 4. What differs, as
in cuML: the moves of one epoch are computed together and summed into the layout, not applied
one edge after another. Why not torchdr 0.5's UMAP (pure Python over torch): it builds its own
affinities from the vectors, with FAISS (no GPU build on our GPU node) or a dense torch search
(n x n distances), and takes no precomputed graph, so it would search again what
torch_knn.py already found.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from cxratlas.reduce.settings import UmapSettings

log = logging.getLogger(__name__)

NEGATIVES = 5  # umap-learn's negative_sample_rate
CLIP = 4.0


def umap_layout(
    X: np.ndarray,
    knn_idx: np.ndarray,
    knn_dist: np.ndarray,
    n_components: int,
    layout: UmapSettings,
    device: str | torch.device = "cuda",
) -> np.ndarray:
    """A UMAP map of the rows of X (float32, n x n_components) from their kNN graph (self first)."""
    n = knn_idx.shape[0]
    epochs = layout.n_epochs or (500 if n <= 10_000 else 200)  # umap-learn's defaults
    head, tail, weight = _edges(knn_idx, knn_dist, epochs)
    gen = torch.Generator(device=device).manual_seed(layout.seed if layout.seed is not None else 0)
    Y = _initial(X, head, tail, weight, n_components, layout, device)
    a, b = ab_params(layout.min_dist)
    edges = _Schedule(head, tail, weight, device)
    for epoch in range(epochs):
        alpha = 1.0 - epoch / epochs
        h, t = edges.fired(epoch)
        _attract(Y, h, t, a, b, alpha)
        _repel(Y, h, a, b, alpha, gen)
    return Y.cpu().numpy().astype(np.float32)


def _edges(knn_idx, knn_dist, epochs: int):
    """The symmetric fuzzy graph's edges, those too weak to be sampled once dropped (umap-learn)."""
    from umap.umap_ import fuzzy_simplicial_set

    n, k = knn_idx.shape
    graph, _, _ = fuzzy_simplicial_set(
        np.empty((n, 1), np.float32), k, None, "precomputed",
        knn_indices=knn_idx, knn_dists=knn_dist.astype(np.float32),
    )  # fmt: skip
    graph = graph.tocoo()
    keep = graph.data >= graph.data.max() / float(epochs)
    return graph.row[keep], graph.col[keep], graph.data[keep].astype(np.float32)


class _Schedule:
    """Which edges move in an epoch: edge e every max(w) / w[e] epochs, as umap-learn samples."""

    def __init__(self, head, tail, weight, device):
        self.head = torch.as_tensor(head, dtype=torch.int64, device=device)
        self.tail = torch.as_tensor(tail, dtype=torch.int64, device=device)
        w = torch.as_tensor(weight, dtype=torch.float32, device=device)
        self.every = w.max() / w
        self.next = self.every.clone()

    def fired(self, epoch: int):
        due = self.next <= epoch + 1
        self.next[due] += self.every[due]
        return self.head[due], self.tail[due]


def _attract(Y, h, t, a: float, b: float, alpha: float) -> None:
    diff = Y[h] - Y[t]
    d2 = (diff * diff).sum(1)
    coef = torch.where(d2 > 0, -2 * a * b * d2.clamp_min(1e-12).pow(b - 1) / (a * d2.pow(b) + 1), 0)
    step = alpha * (coef[:, None] * diff).clamp(-CLIP, CLIP)
    Y.index_add_(0, h, step)
    Y.index_add_(0, t, -step)


def _repel(Y, h, a: float, b: float, alpha: float, gen) -> None:
    hh = h.repeat_interleave(NEGATIVES)
    other = torch.randint(0, Y.shape[0], (hh.numel(),), generator=gen, device=Y.device)
    diff = Y[hh] - Y[other]
    d2 = (diff * diff).sum(1)
    coef = 2 * b / ((0.001 + d2) * (a * d2.pow(b) + 1))
    step = alpha * (coef[:, None] * diff).clamp(-CLIP, CLIP)
    step[other == hh] = 0
    Y.index_add_(0, hh, step)


def _initial(X, head, tail, weight, n_components: int, layout: UmapSettings, device):
    """Spectral (umap-learn's, on the CPU) or PCA of X, scaled into umap-learn's [0, 10] box."""
    n = X.shape[0]
    if layout.init == "spectral" and n > n_components + 1:
        from scipy.sparse import coo_matrix
        from umap.spectral import spectral_layout

        graph = coo_matrix((weight, (head, tail)), shape=(n, n)).tocsr()
        rng = np.random.RandomState(layout.seed)
        init = spectral_layout(X, graph, n_components, rng)
    elif layout.init == "random" or n <= n_components + 1:
        init = np.random.default_rng(layout.seed).uniform(-10, 10, (n, n_components))
    else:  # pca: the top components of the vectors, on the device
        Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
        Xt = Xt - Xt.mean(0)
        torch.manual_seed(layout.seed if layout.seed is not None else 0)
        _, _, V = torch.pca_lowrank(Xt, q=n_components, center=False, niter=4)
        init = (Xt @ V[:, :n_components]).cpu().numpy()
    init = np.asarray(init, np.float64)
    span = init.max(0) - init.min(0)
    init = 10.0 * (init - init.min(0)) / np.where(span > 0, span, 1.0)
    return torch.as_tensor(init, dtype=torch.float32, device=device)


def ab_params(min_dist: float, spread: float = 1.0) -> tuple[float, float]:
    """umap-learn's a and b: the curve 1 / (1 + a d^2b) fitted to its offset exponential."""
    from umap.umap_ import find_ab_params

    a, b = find_ab_params(spread, min_dist)
    return float(a), float(b)
