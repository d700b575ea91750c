"""Choose the reduction backend: `reduce.backend: auto | gpu | cpu`."""

from __future__ import annotations

import logging

from cxratlas.reduce.cpu import CPUBackend

log = logging.getLogger(__name__)


def select_backend(name: str = "auto"):
    """The backend object; `auto` takes the GPU when cuML and FAISS-GPU see a device."""
    if name == "cpu":
        return CPUBackend()
    if name not in ("auto", "gpu"):
        raise ValueError(f"reduce.backend must be auto, gpu or cpu, not {name!r}")
    from cxratlas.reduce.gpu import GPUBackend, gpu_available

    if name == "gpu":
        return GPUBackend()
    ok, why = gpu_available()
    log.info("reduce.backend auto: %s", "gpu" if ok else f"cpu ({why})")
    return GPUBackend() if ok else CPUBackend()
