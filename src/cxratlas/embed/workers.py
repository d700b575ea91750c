"""How many worker processes a job may start: the CPUs it is allowed (Slurm's allocation
included), minus one for the job itself. Torch-free, so CPU-only jobs can ask too."""

from __future__ import annotations

import os


def auto_workers(cap: int = 8) -> int:
    """DataLoader workers for the CPUs this process may use (Slurm's allocation included)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    slurm = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("SLURM_CPUS_ON_NODE")
    if slurm and slurm.isdigit():
        cpus = min(cpus or 1, int(slurm))
    return max(0, min(cap, (cpus or 1) - 1))
