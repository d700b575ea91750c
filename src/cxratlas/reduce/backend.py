"""The reduction backends, in one table, and the one place `reduce.backend: auto` is resolved.

Every backend implements `ReduceBackend` (pca, umap, hdbscan on a given kNN graph). The table
gives what the workflow needs to know before a job runs: the conda env of the reduce job, whether
the job asks the cluster for a GPU, and the kNN engine; rules/reduce.smk asks it, never a name.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cxratlas.reduce.settings import UmapSettings

log = logging.getLogger(__name__)


class ReduceBackend(Protocol):
    """What the reduce pipeline calls; the kNN graph is built before and handed in."""

    name: str  # the reduce.backend it serves
    engine: str  # the libraries that do the work
    gpu: bool  # the kNN graph is searched on a GPU

    def pca(self, X: np.ndarray, n_components: int, seed: int, fit_max: int = ...): ...

    def umap(self, X, knn_idx, knn_dist, n_components: int, layout: UmapSettings): ...

    def hdbscan(self, Y: np.ndarray, min_cluster_size: int, min_samples: int | None): ...


@dataclass(frozen=True)
class BackendInfo:
    name: str
    env: str  # the reduce job's conda env (--sdm conda)
    gpu: bool  # the job asks the cluster for one GPU
    knn: str  # the kNN engine it builds the graph with


BACKENDS = {
    "cpu": BackendInfo(
        "cpu", "envs/cpu.yaml", False, "faiss-cpu exact; k-means cells past exact_max"
    ),
    "gpu": BackendInfo(
        "gpu", "envs/gpu.yaml", True, "FAISS-GPU: exact, IVF past exact_max; else torch exact"
    ),  # cuML's PCA, UMAP and HDBSCAN; without RAPIDS: torch PCA and UMAP, CPU HDBSCAN
}
CHOICES = ("auto", *BACKENDS)


def job_backend(name: str) -> BackendInfo:
    """The env and resources of the reduce job for `reduce.backend`. `auto` runs in the CPU job:
    the node that plans cannot see a compute node's GPU, and the CPU env has no RAPIDS, so
    `select_backend("auto")` there always takes the CPU. Ask for `gpu` to get a GPU job."""
    if name not in CHOICES:
        raise ValueError(f"reduce.backend must be one of {list(CHOICES)}, not {name!r}")
    return BACKENDS["cpu" if name == "auto" else name]


def select_backend(name: str = "auto") -> ReduceBackend:
    """The backend object at run time. `gpu`: cuML where it is installed, else torch alone
    (torch_backend.py) where torch sees a device. `auto`: cuML when it and FAISS-GPU or torch
    see a device in this job's environment (the main venv on a GPU node), else the CPU; it never
    swaps umap-learn's map for the torch layout unasked."""
    job_backend(name)  # refuses unknown names
    if name == "cpu":
        return _cpu()
    if name == "auto" and importlib.util.find_spec("cuml") is None:  # no torch import for it
        log.info("reduce.backend auto: cpu (cuML is not installed)")
        return _cpu()
    from cxratlas.reduce.gpu import GPUBackend, gpu_engine

    engine, why = gpu_engine()
    if name == "gpu":
        if engine is None:
            raise RuntimeError(f"reduce.backend is 'gpu' but {why}")
        log.info("reduce.backend gpu: %s (%s)", engine, why)
        if engine == "cuml":
            return GPUBackend()
        from cxratlas.reduce.torch_backend import TorchBackend

        return TorchBackend("cuda")
    log.info("reduce.backend auto: %s", "gpu (cuML)" if engine == "cuml" else f"cpu ({why})")
    return GPUBackend() if engine == "cuml" else _cpu()


def _cpu() -> ReduceBackend:
    from cxratlas.reduce.cpu import CPUBackend

    return CPUBackend()
