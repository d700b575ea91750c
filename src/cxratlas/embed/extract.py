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

import pandas as pd

from cxratlas.embed.models import Embedder, load_embedder
from cxratlas.embed.reader import image_loader
from cxratlas.embed.runner import run_batches
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
    """A shard job's files: what it writes, the model's fitted state, the shard's decode cache."""

    shard: str
    report: str
    state: str | None = None
    decoded: str | None = None


def extract_shard(
    sample: pd.DataFrame,
    shard: int,
    model_name: str,
    entry: dict[str, Any],
    files: ShardFiles,
    settings: ExtractSettings | None = None,
    embedder: Embedder | None = None,
) -> ShardReport:
    """Embed the images of `shard` in `sample` with one model; write the shard and its report."""
    s = settings or ExtractSettings()
    rows = sample.loc[sample["shard"] == shard].reset_index(drop=True)  # layouts read rel_path
    t0 = time.perf_counter()
    model = embedder or load_embedder(model_name, entry, state_path=files.state, device=s.device)
    load_s = time.perf_counter() - t0
    if not model.reads_images:
        return _import_shard(model, rows, shard, files, load_s, s.storage)
    loader = image_loader(rows, model, files.decoded, s.workers, s.jpeg_decode)
    out = run_batches(model, loader, rows, shard)
    check_unreadable(
        [x["reason"] for x in out.skipped],
        len(rows),
        s.max_skipped_fraction,
        f"model {model_name!r}, shard {shard}",
    )
    matrix = out.matrix(model.dim)
    write_s = write_shard(out.ids, matrix, model.describe() | {"shard": shard}, s.storage,
                          files.shard)  # fmt: skip
    report = ShardReport(
        model=model_name, shard=shard, images=len(rows), embedded=len(out.ids),
        dim=int(matrix.shape[1]), skipped=out.skipped, model_load_s=load_s,
        read_s=out.read_s, inference_s=out.inference_s, write_s=write_s,
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
