"""Embedding extraction for one (model, shard): reader -> runner -> writer.

`reader` decodes and preprocesses images in DataLoader workers, or JPEGs per batch on the GPU
(a bad image is skipped and recorded, never fatal), `runner` runs the model per batch, `writer`
emits the shard and its `ShardReport` atomically. A model that reads no images (precomputed
vectors) looks its shard up.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.embed.models import Embedder, load_embedder, reads_images
from cxratlas.embed.reader import image_loader
from cxratlas.embed.reuse import Earlier, earlier_vectors, entry_sha, source_key, split_rows
from cxratlas.embed.runner import Embedded, run_batches
from cxratlas.embed.workers import auto_workers
from cxratlas.embed.writer import write_report, write_shard
from cxratlas.ingest.imaging import check_unreadable
from cxratlas.io import ShardReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractSettings:
    """How a shard job runs (the `extract` section). `num_workers=None`: the CPUs this job was
    given, minus one for the main process."""

    num_workers: int | None = None
    device: str = "auto"
    jpeg_decode: str = "auto"  # auto | pil | batch (reader.batch_decode_on)
    max_skipped_fraction: float = 0.5
    storage: str = "float32"  # float16 halves the files

    @classmethod
    def from_config(cls, extract: dict[str, Any]) -> ExtractSettings:
        return cls(**{k: extract[k] for k in cls.__dataclass_fields__})

    @property
    def workers(self) -> int:
        return auto_workers() if self.num_workers is None else self.num_workers


@dataclass(frozen=True)
class ShardFiles:
    """A shard job's files: what it writes, the model's fitted state, the shard's decode cache,
    and the model's merged file from the last run (vectors to reuse: `embed.reuse`)."""

    shard: str
    report: str
    state: str | None = None
    decoded: str | None = None
    earlier: str | None = None


def extract_shard(
    sample: pd.DataFrame,
    shard: int,
    model_name: str,
    entry: dict[str, Any],
    files: ShardFiles,
    settings: ExtractSettings | None = None,
    embedder: Embedder | None = None,
) -> ShardReport:
    """Embed the images of `shard` in `sample` with one model, reusing the vectors an earlier
    run made for the same files; write the shard and its report. The model is loaded only if
    some image needs it."""
    s = settings or ExtractSettings()
    rows = sample.loc[sample["shard"] == shard].reset_index(drop=True)  # layouts read rel_path
    lookup = not (embedder.reads_images if embedder else reads_images(model_name, entry))
    if lookup:
        t0 = time.perf_counter()
        model = embedder or load_embedder(model_name, entry, state_path=files.state,
                                          device=s.device)  # fmt: skip
        return _import_shard(model, rows, shard, files, time.perf_counter() - t0, s.storage)
    sha = entry_sha(entry, files.state)
    keys = [source_key(p) for p in rows["path"]]
    earlier = earlier_vectors(files.earlier, rows["image_id"].tolist(), keys, sha, s.storage)
    todo = split_rows(rows, earlier)
    log.info("shard %d: %d image(s), %d vector(s) reused from %s, %d to embed",
             shard, len(rows), len(earlier.rows), files.earlier, len(todo))  # fmt: skip
    out, load_s, meta = Embedded(), 0.0, earlier.meta
    dim = earlier.matrix.shape[1]
    if len(todo):
        t0 = time.perf_counter()
        model = embedder or load_embedder(model_name, entry, state_path=files.state,
                                          device=s.device)  # fmt: skip
        load_s = time.perf_counter() - t0
        loader = image_loader(todo, model, files.decoded, s.workers, s.jpeg_decode)
        out = run_batches(model, loader, todo, shard)
        check_unreadable(
            [x["reason"] for x in out.skipped],
            len(todo),
            s.max_skipped_fraction,
            f"model {model_name!r}, shard {shard}",
        )
        meta, dim = model.describe(), model.dim
    ids, matrix = _in_row_order(rows, out, earlier, dim)
    by_id = dict(zip(rows["image_id"], keys, strict=True))
    write_s = write_shard(ids, matrix, meta | {"shard": shard, "entry_sha": sha}, s.storage,
                          files.shard, [by_id[i] for i in ids])  # fmt: skip
    report = ShardReport(
        model=model_name, shard=shard, images=len(rows), embedded=len(out.ids),
        reused=len(earlier.rows), dim=int(matrix.shape[1]), skipped=out.skipped,
        model_load_s=load_s, read_s=out.read_s, inference_s=out.inference_s, write_s=write_s,
    )  # fmt: skip
    return write_report(report, files.report)


def _import_shard(model, rows, shard, files: ShardFiles, load_s, storage) -> ShardReport:
    """A precomputed model's shard: look the vectors up instead of reading images."""
    t0 = time.perf_counter()
    ids, matrix, skipped, missing = model.lookup(rows)
    read_s = time.perf_counter() - t0
    for s in skipped:
        log.warning("skipped %s", s["reason"])
    if missing:
        log.warning(
            "%d of %d sampled images are not in %s (first: %s); the atlas keeps the images "
            "every model covers",
            len(missing), len(rows), model.source, missing[:3],
        )  # fmt: skip
    write_s = write_shard(ids, matrix, model.describe() | {"shard": shard}, storage, files.shard)
    report = ShardReport(
        model=model.name, shard=shard, images=len(rows), embedded=len(ids),
        dim=int(matrix.shape[1]), skipped=skipped, missing=len(missing),
        missing_examples=missing[:20], model_load_s=load_s, read_s=read_s, write_s=write_s,
    )  # fmt: skip
    return write_report(report, files.report)


def _in_row_order(rows: pd.DataFrame, out: Embedded, earlier: Earlier, dim: int):
    """(ids, vectors) of the computed and the reused vectors together, in the shard's order;
    reused float16 vectors stay float16 until written (bit for bit)."""
    computed = out.matrix(dim) if out.vectors else None
    dtype = earlier.matrix.dtype if earlier.rows else np.float32
    where = {i: ("new", j) for j, i in enumerate(out.ids)} | {
        i: ("old", j) for i, j in earlier.rows.items()
    }
    ids = [i for i in rows["image_id"] if i in where]
    matrix = np.empty((len(ids), dim), dtype if computed is None else np.float32)
    for r, i in enumerate(ids):
        kind, j = where[i]
        matrix[r] = computed[j] if kind == "new" else earlier.matrix[j]
    return ids, matrix
