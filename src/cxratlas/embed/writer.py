"""The writer: one shard file and its report, each written atomically (a failed job leaves
neither, so Snakemake reruns exactly the shards that are missing)."""

from __future__ import annotations

import logging
import time

import numpy as np

from cxratlas.io import ShardReport, embedding_table, write_parquet

log = logging.getLogger(__name__)


def write_shard(
    ids: list[str], matrix: np.ndarray, meta: dict, storage: str, out_path: str,
    sources: list[str | None] | None = None,
) -> float:  # fmt: skip
    """Write the shard (float32 or float16 on disk), with each vector's source key when
    given; returns the seconds it took."""
    t0 = time.perf_counter()
    write_parquet(embedding_table(ids, matrix, meta, storage, sources), out_path)
    return time.perf_counter() - t0


def write_report(report: ShardReport, path: str) -> ShardReport:
    report.write(path)
    log.info(
        "shard %d: %d embedded, %d reused, %d skipped, %d missing; load %.2fs, read %.2fs, "
        "inference %.2fs, write %.2fs",
        report.shard, report.embedded, report.reused, len(report.skipped), report.missing,
        report.model_load_s, report.read_s, report.inference_s, report.write_s,
    )  # fmt: skip
    return report
