"""Pruning: images that left the sample (withdrawn consent, a bad series, a smaller `sample.n`)
leave every per-shard file already written and every log, before any job runs.

Why here and not in the jobs: a shard that only lost images needs no model and no GPU: its
remaining vectors are still right. Filtering its files in place costs seconds; rerunning its
job would queue a GPU job to copy vectors. The merge, the reduction and everything after them
run again anyway (their param `members_sha` changed), and rewrite their files without the
removed images. Files of shards that no image is left in are deleted.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cxratlas.io import ShardReport, write_parquet

log = logging.getLogger(__name__)

RESULTS, LOGS = Path("results"), Path("logs")
# the per-shard files, as globs of the shard's number: everything a shard job writes or logs
SHARD_FILES = (
    "results/embeddings/*/shard-{k}.parquet",
    "results/embeddings/*/shard-{k}.report.json",
    "results/thumbnails/shard-{k}.parquet",
    "results/decoded/*/shard-{k}.parquet",
)
SHARD_LOGS = (
    "logs/embed/*/shard-{k}.log",
    "logs/thumbnails/shard-{k}.log",
    "logs/decode/*/shard-{k}.log",
    "logs/benchmarks/embed/*/shard-{k}.tsv",
    "logs/benchmarks/decode/*/shard-{k}.tsv",
)


@contextmanager
def same_mtime(path: Path):
    """Rewrite `path` keeping its mtime: Snakemake would otherwise take a pruned shard file for a
    new input and rerun every job downstream of it (the jobs that must rerun do so on their
    `members` param)."""
    st = path.stat()
    yield
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _files(patterns, shard: int) -> list[Path]:
    return sorted(p for pat in patterns for p in Path().glob(pat.format(k=shard)))


def _filter_parquet(path: Path, keep: set[str]) -> int:
    """Rewrite `path` without rows whose image_id is not in `keep` (metadata kept); returns
    the rows removed."""
    table = pq.read_table(path)
    mask = pc.is_in(table.column("image_id"), value_set=pa_strings(keep))
    dropped = table.num_rows - pc.sum(mask).as_py() if table.num_rows else 0
    if dropped:
        with same_mtime(path):
            write_parquet(table.filter(mask).replace_schema_metadata(table.schema.metadata), path)
    return dropped


def pa_strings(values) -> object:
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())


def _filter_report(path: Path, keep: set[str], removed_rows: int) -> None:
    report = ShardReport.read(path)
    skipped = [s for s in report.skipped if s["image_id"] in keep]
    gone = len(report.skipped) - len(skipped)
    if not (gone or removed_rows):
        return
    report.skipped = skipped
    report.images -= gone + removed_rows
    report.pruned += removed_rows
    with same_mtime(path):
        report.write(path)


def prune_shards(previous: pd.DataFrame, ledger: pd.DataFrame) -> dict[str, int]:
    """Take the images that left each shard out of its files; delete the files of shards no
    image is left in. Returns counts of what was done."""
    now = ledger.groupby("shard")["image_id"].agg(set).to_dict()
    before = previous.groupby("shard")["image_id"].agg(set).to_dict()
    done = {"files_rewritten": 0, "files_deleted": 0, "rows_removed": 0}
    for shard, ids in before.items():
        keep = now.get(shard, set())
        if ids <= keep:
            continue
        if not keep:
            for path in _files(SHARD_FILES + SHARD_LOGS, shard):
                path.unlink()
                done["files_deleted"] += 1
            continue
        removed_rows = {}
        for path in _files(SHARD_FILES, shard):
            if path.suffix == ".parquet":
                removed_rows[path.with_suffix("")] = n = _filter_parquet(path, keep)
                done["rows_removed"] += n
                done["files_rewritten"] += bool(n)
        for path in _files(SHARD_FILES, shard):
            if path.name.endswith(".report.json"):
                shard_file = path.with_name(path.name.replace(".report.json", ""))
                _filter_report(path, keep, removed_rows.get(shard_file, 0))
    return done


def scrub_logs(ids: list[str], paths: list[str]) -> int:
    """Drop every line that names a removed image (id or path) from the text files under
    logs/; returns the files changed."""
    tokens = [t for t in {*ids, *paths} if t]
    if not tokens or not LOGS.exists():
        return 0
    alternatives = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
    # whole tokens only: removing image "i1" must not drop the lines of "i10"
    pattern = re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
    changed = 0
    for path in LOGS.rglob("*"):
        if not path.is_file() or path.suffix not in (".log", ".tsv", ".txt", ".json"):
            continue
        text = path.read_text(errors="replace")
        if not pattern.search(text):
            continue
        kept = [line for line in text.splitlines(keepends=True) if not pattern.search(line)]
        with same_mtime(path):
            path.write_text("".join(kept))
        changed += 1
    return changed


def prune_results(
    previous: pd.DataFrame, ledger: pd.DataFrame, say: Callable[[str], None] = log.warning
) -> None:
    """Everything images that left the sample were written into, before any job runs."""
    removed = previous.loc[~previous["image_id"].isin(ledger["image_id"])]
    if removed.empty:
        return
    done = prune_shards(previous, ledger)
    logs = scrub_logs(removed["image_id"].tolist(), removed["path"].astype(str).tolist())
    say(
        f"pruned {len(removed)} image(s) that left the sample: {done['rows_removed']} row(s) "
        f"out of {done['files_rewritten']} shard file(s), {done['files_deleted']} file(s) of "
        f"emptied shards deleted, {logs} log file(s) cleaned; no image is embedded again"
    )
