"""The GPU backend with RAPIDS: cuML PCA, cuML UMAP on the FAISS graph, cuML HDBSCAN.

Imported only when the GPU backend is chosen, so the CPU path never needs RAPIDS. The kNN graph
itself comes from FAISS on the GPU (knn.py, gpu=True), or from torch where FAISS has no GPU
build (torch_knn.py), and is handed to cuML as `precomputed_knn`, so UMAP does not search again.
`gpu_engine` says which GPU engine a job can run: this one first, else torch_backend.py.
"""

from __future__ import annotations

import numpy as np

from cxratlas.reduce.projection import fit_and_project
from cxratlas.reduce.settings import UmapSettings


def gpu_engine() -> tuple[str | None, str]:
    """The GPU engine this job's environment can run, and why: `cuml` (RAPIDS; FAISS-GPU or
    torch for the graph), `torch` (torch alone: torch_backend.py), or None."""
    try:
        import cuml  # noqa: F401
    except ImportError as exc:
        if _torch_cuda():
            return "torch", f"cuML is not installed ({exc}): torch PCA and UMAP on the GPU"
        return None, f"cuML is not installed ({exc}) and torch sees no CUDA device"
    from cxratlas.reduce.knn import faiss_gpu

    if faiss_gpu():
        return "cuml", "cuML and FAISS-GPU see a device"
    if _torch_cuda():  # the kNN graph then comes from torch (torch_knn.py)
        return "cuml", "cuML and torch see a device (kNN: torch exact, no FAISS-GPU)"
    return None, "neither FAISS-GPU nor torch sees a GPU"


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


class GPUBackend:
    name = "gpu"
    engine = "cuml"
    gpu = True

    def __init__(self) -> None:
        engine, why = gpu_engine()
        if engine != "cuml":
            raise RuntimeError(f"the cuML backend needs RAPIDS and a device, but {why}")

    def pca(self, X: np.ndarray, n_components: int, seed: int, fit_max: int = 1_000_000):
        from cuml.decomposition import PCA

        model = PCA(n_components=n_components, output_type="numpy")
        out = fit_and_project(model, X, n_components, seed, fit_max, block=262144)
        return out, float(np.asarray(model.explained_variance_ratio_).sum())

    def umap(
        self,
        X: np.ndarray,
        knn_idx: np.ndarray,
        knn_dist: np.ndarray,
        n_components: int,
        layout: UmapSettings,
    ) -> np.ndarray:
        from cuml.manifold import UMAP

        model = UMAP(
            n_neighbors=knn_idx.shape[1],
            n_components=n_components,
            metric="cosine",
            min_dist=layout.min_dist,
            n_epochs=layout.n_epochs,
            random_state=layout.seed,
            init=layout.init if layout.init in ("spectral", "random") else "spectral",
            precomputed_knn=(knn_idx, knn_dist),  # self first, as cuML requires
            output_type="numpy",
        )
        return np.asarray(model.fit_transform(X), np.float32)

    def hdbscan(
        self, Y: np.ndarray, min_cluster_size: int = 10, min_samples: int | None = None
    ) -> np.ndarray:
        from cuml.cluster import HDBSCAN

        if Y.shape[0] < max(min_cluster_size, 2):
            return np.full(Y.shape[0], -1, np.int32)
        model = HDBSCAN(
            min_cluster_size=min_cluster_size, min_samples=min_samples, output_type="numpy"
        )
        return np.asarray(model.fit_predict(Y), np.int32)
