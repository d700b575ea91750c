"""The torch UMAP layout (reduce/torch_umap.py) against umap-learn on the same kNN graph."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from cxratlas.reduce.cpu import CPUBackend
from cxratlas.reduce.knn import l2_normalise
from cxratlas.reduce.settings import UmapSettings
from cxratlas.reduce.torch_umap import umap_layout


def _blobs(n: int, seed: int, spread: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 64))
    return l2_normalise((centres[rng.integers(0, 12, n)] + spread * rng.normal(size=(n, 64)))
                        .astype(np.float32))  # fmt: skip


def _graph(X: np.ndarray, k: int = 15):
    sim = X @ X.T
    idx = np.argsort(-sim, axis=1)[:, :k]
    return idx, np.clip(1 - np.take_along_axis(sim, idx, 1), 0, None).astype(np.float32)


@pytest.mark.parametrize("spread", [0.3, 1.5])  # separated blobs; blobs lost in noise (hard)
def test_the_torch_layout_is_as_trustworthy_as_umap_learn_and_reproducible(spread):
    X = _blobs(800, 3, spread)
    idx, dist = _graph(X)
    layout = UmapSettings(seed=42, n_epochs=200, init="spectral")
    ours = umap_layout(X, idx, dist, 2, layout, device="cpu")
    ref = CPUBackend().umap(X, idx, dist, 2, layout)
    t_ours = trustworthiness(X, ours, n_neighbors=15, metric="cosine")
    t_ref = trustworthiness(X, ref, n_neighbors=15, metric="cosine")
    assert t_ours >= t_ref - 0.01, (t_ours, t_ref)
    assert np.array_equal(ours, umap_layout(X, idx, dist, 2, layout, device="cpu"))
    shuffled = umap_layout(X, idx, dist, 2, UmapSettings(seed=7, n_epochs=200), device="cpu")
    assert not np.array_equal(ours, shuffled)  # the seed is used
