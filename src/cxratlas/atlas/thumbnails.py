"""Thumbnails: one PNG per image of a shard, shared by every model's view in the atlas."""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa

from cxratlas.ingest.imaging import ImageLoadError, ImageSource, check_unreadable, thumbnail_png
from cxratlas.io import write_parquet

log = logging.getLogger(__name__)


def make_thumbnails(
    sample: pd.DataFrame,
    shard: int,
    size: int,
    out_path: str,
    max_skipped_fraction: float = 0.5,
    decoded_path: str | None = None,
) -> int:
    """Thumbnails (PNG bytes) of one shard's images; an unreadable image gets a null thumbnail."""
    rows = sample.loc[sample["shard"] == shard]
    source = ImageSource(decoded_path)
    thumbs, failed = [], []
    for image_id, path in zip(rows["image_id"], rows["path"], strict=True):
        try:
            thumbs.append(thumbnail_png(source.load(image_id, path), size))
        except ImageLoadError as exc:
            log.warning("no thumbnail: %s", exc)
            thumbs.append(None)
            failed.append(str(exc))
    check_unreadable(failed, len(rows), max_skipped_fraction, f"thumbnails of shard {shard}")
    table = pa.table(
        {
            "image_id": pa.array(rows["image_id"].tolist(), pa.string()),
            "thumbnail": pa.array(thumbs, pa.binary()),
        }
    )
    write_parquet(table, out_path)
    return len(failed)
