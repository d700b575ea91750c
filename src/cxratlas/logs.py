"""Logging for rule scripts: messages, warnings and progress bars all go to the rule's log."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream  # tqdm and warnings write here too
        handlers = [logging.StreamHandler(stream)]
    logging.basicConfig(
        level=level,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    # Which node and Slurm job wrote this log: the first thing to check when a shard misbehaves.
    job = os.environ.get("SLURM_JOB_ID")
    array = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    where = f", slurm job {job}" if job else ""
    if job and all(array):  # the id squeue, scancel and Snakemake use for an array task
        where += f", array task {array[0]}_{array[1]}"
    logging.getLogger("cxratlas").info("host %s%s", socket.gethostname(), where)


def alert(log: logging.Logger, message: str, *args) -> None:
    """A finding the user must see (a flagged shortcut, a quality figure below its target): in
    the rule's log and on the console Snakemake prints, which the job's log file replaced."""
    log.warning(message, *args)
    print(f"WARNING: {message % args if args else message}", file=sys.__stderr__, flush=True)
