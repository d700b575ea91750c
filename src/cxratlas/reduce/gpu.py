"""The GPU backend: cuML PCA, cuML UMAP on the FAISS graph, cuML HDBSCAN (RAPIDS).

Imported only when the GPU backend is chosen, so the CPU path never needs RAPIDS. The kNN graph
itself comes from FAISS on the GPU (knn.py, gpu=True), or from torch where FAISS has no GPU
build (torch_knn.py), and is handed to cuML as `precomputed_knn`, so UMAP does not search again.
"""

from __future__ import annotations

import numpy as np

from cxratlas.reduce.projection import fit_and_project
from cxratlas.reduce.settings import UmapSettings


def gpu_available() -> tuple[bool, str]:
    """Whether cuML and a FAISS build with GPUs are importable and see a device, and why not."""
    try:
        import cuml  # noqa: F401
    except ImportError as exc:
        return False, f"cuML is not installed ({exc}); use envs/gpu.yaml"
    from cxratlas.reduce.knn import faiss_gpu

    if faiss_gpu():
        return True, "cuML and FAISS-GPU see a device"
    try:  # the kNN graph then comes from torch (torch_knn.py)
        import torch

        if torch.cuda.is_available():
            return True, "cuML and torch see a device (kNN: torch exact, no FAISS-GPU)"
    except ImportError:
        pass
    return False, "neither FAISS-GPU nor torch sees a GPU"


class GPUBackend:
    name = "gpu"
    gpu = True

    def __init__(self) -> None:
        ok, why = gpu_available()
        if not ok:
            raise RuntimeError(f"reduce.backend is 'gpu' but {why}")

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
