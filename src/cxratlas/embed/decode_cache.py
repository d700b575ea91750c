"""The decode cache: each image of a shard decoded, converted to 8 bits and downsized once.

Decoding a 3000 x 2500 DICOM or PNG costs tens of milliseconds a core; five models reading the
originals pay it five times and leave GPUs waiting. With `extract.decode_cache: <max side>`, one
CPU job per shard and 8-bit conversion writes `results/decoded/<intensity key>/shard-<i>.parquet`
(image_id, PNG bytes, error), and every model converting the same way (its `intensity:`
block) and the thumbnails (the display conversion) read it instead. The conversion runs on the
full-size film, before downsizing, as each model's authors run it. Set the max side at or
above the largest model input (MedGemma: 896 px) so no model sees a smaller image than it
would have.
"""

from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from cxratlas.ingest.imaging import ImageLoadError, check_unreadable, downsized_png, load_gray8
from cxratlas.ingest.intensity import Intensity
from cxratlas.io import write_parquet

log = logging.getLogger(__name__)


def _decode(args: tuple[str, int, Intensity | None]) -> tuple[bytes | None, str | None]:
    path, max_side, intensity = args
    try:
        return downsized_png(load_gray8(path, intensity), max_side), None
    except ImageLoadError as exc:
        return None, str(exc)


def write_decode_cache(
    sample: pd.DataFrame,
    shard: int,
    max_side: int,
    out_path: str | os.PathLike,
    max_skipped_fraction: float = 0.5,
    workers: int | None = None,
    intensity: Intensity | None = None,
) -> dict[str, int]:
    """Decode one shard's images into the cache file; unreadable images keep their reason."""
    from cxratlas.embed.workers import auto_workers

    rows = sample.loc[sample["shard"] == shard]
    workers = workers if workers is not None else auto_workers() + 1
    jobs = [(p, max_side, intensity) for p in rows["path"]]
    bar = tqdm(total=len(jobs), desc=f"decode shard {shard}", unit="img", file=sys.stderr,
               mininterval=5, disable=None)  # fmt: skip
    results = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for r in pool.map(_decode, jobs, chunksize=16):
                results.append(r)
                bar.update()
    else:
        for job in jobs:
            results.append(_decode(job))
            bar.update()
    bar.close()
    errors = [e for _, e in results if e]
    for e in errors:
        log.warning("unreadable: %s", e)
    check_unreadable(errors, len(rows), max_skipped_fraction, f"decode cache of shard {shard}")
    table = pa.table(
        {
            "image_id": pa.array(rows["image_id"].tolist(), pa.string()),
            "image": pa.array([b for b, _ in results], pa.binary()),
            "error": pa.array([e for _, e in results], pa.string()),
        }
    )
    write_parquet(table, out_path)
    stats = {"images": len(rows), "unreadable": len(errors)}
    log.info("decode cache shard %d: %s, max side %d px", shard, stats, max_side)
    return stats
