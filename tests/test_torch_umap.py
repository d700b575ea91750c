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


def _generator(name: str, n: int) -> np.ndarray:
    """The reduce benchmark's two generators (benchmarks/reduce.py), one hard for PCA."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from reduce import GENERATORS

    return GENERATORS[name](n, 256, seed=5)


@pytest.mark.parametrize("generator", ["subspace", "isotropic"])
def test_the_torch_backend_reduces_as_well_as_the_cpu_backend(generator):
    """reduce.backend gpu without RAPIDS (torch PCA, torch UMAP, CPU HDBSCAN), run on the CPU
    build of torch: the same pipeline, trustworthiness within 0.01 of the CPU backend's."""
    from cxratlas.reduce import ReduceSettings, reduce_embeddings
    from cxratlas.reduce.torch_backend import TorchBackend

    X = _generator(generator, 1500)
    s = ReduceSettings(pca=64, min_cluster_size=20, trust_sample=1500)
    cpu = reduce_embeddings(X.copy(), s.but(backend="cpu"))
    ours = reduce_embeddings(X.copy(), s, backend=TorchBackend("cpu"))
    assert ours.quality["engine"] == "torch" and cpu.quality["engine"] == "umap-learn"
    assert ours.quality["trustworthiness"] >= cpu.quality["trustworthiness"] - 0.01
    assert ours.quality["pca"]["explained_variance"] == pytest.approx(
        cpu.quality["pca"]["explained_variance"],
        abs=5e-3,  # theirs: randomised SVD
    )
    assert ours.quality["knn"]["recall"] >= 0.95  # searched in the torch PCA's space
    assert len(set(ours.cluster.tolist()) - {-1}) >= 2
    again = reduce_embeddings(X.copy(), s, backend=TorchBackend("cpu"))
    assert np.array_equal(ours.xy, again.xy)  # seeded: the same map


def test_torch_pca_matches_scikit_learn():
    from sklearn.decomposition import PCA

    from cxratlas.reduce.torch_backend import TorchPCA

    X = _generator("subspace", 600)
    ours = TorchPCA(8, "cpu").fit(X)
    ref = PCA(8, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-4)  # fmt: skip
    a, b = ours.transform(X), ref.transform(X).astype(np.float32)
    signs = np.sign((a * b).sum(0))
    np.testing.assert_allclose(a, b * signs, atol=1e-3 * np.abs(b).max())
    flipped = TorchPCA(8, "cpu").fit(-X[::-1].copy() * -1)  # same rows, other order
    np.testing.assert_allclose(flipped.transform(X), a, atol=1e-4 * np.abs(a).max())
