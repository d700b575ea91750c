"""Embedding extraction for one (model, shard): reader -> mapper -> writer.

The reader decodes and preprocesses images in DataLoader workers; a bad image is skipped and
recorded, never fatal. The mapper runs the model per batch. The writer emits the shard atomically,
with a JSON report of what was skipped and how long reading, inference and writing took.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cxratlas.embed.models import Embedder, load_embedder
from cxratlas.embed.workers import auto_workers
from cxratlas.ingest.imaging import ImageLoadError, ImageSource, check_unreadable
from cxratlas.io import embedding_table, write_json, write_parquet

log = logging.getLogger(__name__)


class ImageReader(Dataset):
    """Rows of the sample -> (row, preprocessed array or None, error message or None)."""

    def __init__(self, rows: pd.DataFrame, preprocess, source: ImageSource | None = None):
        self.ids = rows["image_id"].tolist()
        self.paths = rows["path"].tolist()
        self.preprocess = preprocess
        self.source = source or ImageSource()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        try:
            return i, self.preprocess(self.source.load(self.ids[i], self.paths[i])), None
        except ImageLoadError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a processor failing on one odd image must not sink the shard
            return i, None, f"{self.paths[i]}: preprocessing failed ({type(exc).__name__}: {exc})"


def _collate(items):
    ok = [(i, x) for i, x, err in items if err is None]
    bad = [(i, err) for i, _, err in items if err is not None]
    batch = np.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], batch, bad


def extract_shard(
    sample: pd.DataFrame,
    shard: int,
    model_name: str,
    entry: dict[str, Any],
    out_path: str,
    report_path: str,
    state_path: str | None = None,
    num_workers: int | None = None,
    device: str = "auto",
    embedder: Embedder | None = None,
    max_skipped_fraction: float = 0.5,
    decoded_path: str | None = None,
    storage: str = "float32",
) -> dict[str, Any]:
    """Embed the images of `shard` in `sample` with one model and write the shard file.

    `num_workers=None` uses the CPUs this job was given, minus one for the main process.
    `decoded_path`: the shard's decode cache, read instead of the original files.
    """
    if num_workers is None:
        num_workers = auto_workers()
    rows = sample.loc[sample["shard"] == shard].reset_index(drop=True)  # layouts read rel_path
    t0 = time.perf_counter()
    model = embedder or load_embedder(model_name, entry, state_path=state_path, device=device)
    load_s = time.perf_counter() - t0
    if not model.reads_images:
        return _import_shard(model, rows, shard, out_path, report_path, load_s, storage)
    loader = DataLoader(
        ImageReader(rows, model.preprocess, ImageSource(decoded_path)),
        batch_size=model.batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=getattr(model, "device", "") == "cuda",
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    timings = {"read_s": 0.0, "inference_s": 0.0, "write_s": 0.0}
    bar = tqdm(
        total=len(rows),
        desc=f"{model_name} shard {shard}",
        unit="img",
        file=sys.stderr,
        mininterval=5,
        disable=None,
    )
    t_read = time.perf_counter()
    for b, (idx, batch, bad) in enumerate(loader):
        t_inf = time.perf_counter()
        read = t_inf - t_read
        for i, err in bad:
            skipped.append({"image_id": rows.at[i, "image_id"], "reason": err})
            log.warning("skipped %s", err)
        inference = 0.0
        if batch is not None:
            emb = model.embed(batch)
            inference = time.perf_counter() - t_inf
            if not np.isfinite(emb).all():
                raise FloatingPointError(
                    f"model {model_name!r} produced NaN/inf on shard {shard}, "
                    f"batch {b} (images {rows.at[idx[0], 'image_id']}...)"
                )
            vectors.append(emb.astype(np.float32))
            ids.extend(rows.at[i, "image_id"] for i in idx)
        timings["read_s"] += read
        timings["inference_s"] += inference
        log.info(
            "batch %d: %d images, read %.3fs, inference %.3fs",
            b,
            len(idx) + len(bad),
            read,
            inference,
        )
        bar.update(len(idx) + len(bad))
        t_read = time.perf_counter()
    bar.close()
    check_unreadable(
        [s["reason"] for s in skipped],
        len(rows),
        max_skipped_fraction,
        f"model {model_name!r}, shard {shard}",
    )
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, model.dim), np.float32)
    meta = model.describe() | {"shard": shard}
    t_write = time.perf_counter()
    write_parquet(embedding_table(ids, matrix, meta, storage), out_path)
    timings["write_s"] = time.perf_counter() - t_write
    report = {
        "model": model_name,
        "shard": shard,
        "images": len(rows),
        "embedded": len(ids),
        "skipped": skipped,
        "dim": int(matrix.shape[1]),
        "model_load_s": load_s,
        **timings,
        "images_per_s_inference": len(ids) / timings["inference_s"]
        if timings["inference_s"]
        else None,
    }
    write_json(report, report_path)
    log.info(
        "shard %d: %d embedded, %d skipped; read %.2fs, inference %.2fs, write %.2fs",
        shard,
        len(ids),
        len(skipped),
        timings["read_s"],
        timings["inference_s"],
        timings["write_s"],
    )
    return report


def _import_shard(model, rows, shard, out_path, report_path, load_s, storage) -> dict[str, Any]:
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
            len(missing),
            len(rows),
            model.source,
            missing[:3],
        )
    t_write = time.perf_counter()
    meta = model.describe() | {"shard": shard}
    write_parquet(embedding_table(ids, matrix, meta, storage), out_path)
    report = {
        "model": model.name,
        "shard": shard,
        "images": len(rows),
        "embedded": len(ids),
        "skipped": skipped,
        "missing": len(missing),
        "missing_examples": missing[:20],
        "dim": int(matrix.shape[1]),
        "model_load_s": load_s,
        "read_s": read_s,
        "inference_s": 0.0,
        "write_s": time.perf_counter() - t_write,
    }
    write_json(report, report_path)
    log.info(
        "shard %d: %d imported, %d skipped, %d missing", shard, len(ids), len(skipped), len(missing)
    )
    return report
