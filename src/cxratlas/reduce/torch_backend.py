"""The GPU backend without RAPIDS: torch PCA, the torch UMAP layout (torch_umap.py), HDBSCAN on
the CPU. For a GPU node with torch but no cuML (the H200 check machine has torch, CuPy and
numba-cuda, not RAPIDS); `reduce.backend: gpu` takes cuML first wherever it is installed.

The kNN graph comes from torch_knn.py on the device (knn.py: FAISS without a GPU build sends the
GPU search to torch). HDBSCAN runs on the 2-D map, where the `hdbscan` package's Boruvka k-d
tree is fast on the CPU (3 s at 100k), so nothing here needs a GPU clustering library.
The backend runs on the CPU build of torch too (`device="cpu"`), which is how it is tested.
"""

from __future__ import annotations

import numpy as np

from cxratlas.reduce.projection import fit_and_project
from cxratlas.reduce.settings import UmapSettings

BLOCK = 65536  # rows moved to the device at once


class TorchPCA:
    """PCA by the eigenvectors of the fitted rows' covariance (d x d: exact and deterministic,
    unlike a randomised SVD), on the device; the fit/transform contract of fit_and_project."""

    def __init__(self, n_components: int, device: str):
        self.n_components, self.device = n_components, device

    def fit(self, X: np.ndarray) -> TorchPCA:
        """The covariance is summed over blocks of rows in float64: a 1M-row fit holds one
        block on the device, not the matrix twice."""
        import torch

        mean = np.zeros(X.shape[1], np.float64)
        for start in range(0, len(X), BLOCK):
            mean += self._device(X[start : start + BLOCK]).sum(0).cpu().numpy()
        self.mean_ = torch.as_tensor(mean / len(X), device=self.device)
        cov = torch.zeros((X.shape[1], X.shape[1]), dtype=torch.float64, device=self.device)
        for start in range(0, len(X), BLOCK):
            block = self._device(X[start : start + BLOCK]) - self.mean_
            cov += block.T @ block
        values, vectors = torch.linalg.eigh(cov)  # ascending
        top = torch.flip(torch.arange(len(values), device=values.device), [0])[: self.n_components]
        self.components_ = _sign_fixed(vectors[:, top])
        self.explained_variance_ratio_ = (values[top] / values.clamp_min(0).sum()).cpu().numpy()
        return self

    def _device(self, X: np.ndarray):
        import torch

        return torch.as_tensor(np.ascontiguousarray(X), device=self.device).to(torch.float64)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((self._device(X) - self.mean_) @ self.components_).float().cpu().numpy()


def _sign_fixed(vectors):
    """Each component's sign set so its largest loading is positive (as scikit-learn does):
    the same matrix gives the same scores on any device."""
    import torch

    big = torch.argmax(vectors.abs(), dim=0)
    signs = torch.sign(vectors[big, torch.arange(vectors.shape[1], device=vectors.device)])
    return vectors * torch.where(signs == 0, 1.0, signs)


class TorchBackend:
    """`reduce.backend: gpu` where cuML is absent: torch on `device` (cuda, or cpu in tests)."""

    name = "gpu"
    engine = "torch"

    def __init__(self, device: str = "cuda") -> None:
        self.device = device
        self.gpu = device != "cpu"  # the kNN engine: torch on a GPU, FAISS on the CPU

    def pca(self, X: np.ndarray, n_components: int, seed: int, fit_max: int = 1_000_000):
        model = TorchPCA(n_components, self.device)
        out = fit_and_project(model, X, n_components, seed, fit_max, block=262144)
        return out, float(model.explained_variance_ratio_.sum())

    def umap(
        self,
        X: np.ndarray,
        knn_idx: np.ndarray,
        knn_dist: np.ndarray,
        n_components: int,
        layout: UmapSettings,
    ) -> np.ndarray:
        from cxratlas.reduce.torch_umap import umap_layout

        return umap_layout(X, knn_idx, knn_dist, n_components, layout, device=self.device)

    def hdbscan(
        self, Y: np.ndarray, min_cluster_size: int = 10, min_samples: int | None = None
    ) -> np.ndarray:
        from cxratlas.reduce.cpu import CPUBackend

        return CPUBackend().hdbscan(Y, min_cluster_size, min_samples)
