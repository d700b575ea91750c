"""The runner: the model over a shard's batches, timing reading against inference per batch."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    """What the runner produced: vectors in the order of `ids`, and the images it skipped."""

    ids: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    read_s: float = 0.0
    inference_s: float = 0.0

    def matrix(self, dim: int) -> np.ndarray:
        return np.concatenate(self.vectors) if self.vectors else np.zeros((0, dim), np.float32)


def run_batches(model, loader, rows: pd.DataFrame, shard: int) -> Embedded:
    """Embed every batch of `loader`; NaN or inf from the model stops the shard (no file)."""
    out = Embedded()
    desc = f"{model.name} shard {shard}"
    bar = tqdm(total=len(rows), desc=desc, unit="img", file=sys.stderr, mininterval=5, disable=None)
    t_read = time.perf_counter()
    for b, (idx, batch, bad) in enumerate(loader):
        t_inf = time.perf_counter()
        read = t_inf - t_read
        for i, err in bad:
            out.skipped.append({"image_id": rows.at[i, "image_id"], "reason": err})
            log.warning("skipped %s", err)
        inference = 0.0
        if batch is not None:
            emb = model.embed(batch)
            inference = time.perf_counter() - t_inf
            if not np.isfinite(emb).all():
                raise FloatingPointError(
                    f"model {model.name!r} produced NaN/inf on shard {shard}, "
                    f"batch {b} (images {rows.at[idx[0], 'image_id']}...)"
                )
            out.vectors.append(emb.astype(np.float32))
            out.ids.extend(rows.at[i, "image_id"] for i in idx)
        out.read_s += read
        out.inference_s += inference
        log.info("batch %d: %d images, read %.3fs, inference %.3fs",
                 b, len(idx) + len(bad), read, inference)  # fmt: skip
        bar.update(len(idx) + len(bad))
        t_read = time.perf_counter()
    bar.close()
    return out
