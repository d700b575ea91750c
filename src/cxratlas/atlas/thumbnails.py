"""Thumbnails: one small image per image of a shard, shared by every model's view in the atlas.

PNG up to `JPEG_PAST` sampled images, JPEG beyond (`atlas.thumbnail_format: auto`): Embedding
Atlas's server holds about 3 x the thumbnail bytes in memory (pandas objects, Arrow, DuckDB), so
at a million rows 96-px PNGs (4.4 KB each on real CXRs) would need ~13 GB where JPEGs (1.9 KB)
need ~6 GB, and the atlas file shrinks from 4.4 to 1.9 GB (benchmarks/scale.py measures it).
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa

from cxratlas.ingest.imaging import (
    THUMBNAIL_ENCODINGS,
    ImageLoadError,
    ImageSource,
    check_unreadable,
    thumbnail_png,
)
from cxratlas.io import write_parquet

log = logging.getLogger(__name__)

JPEG_PAST = 100_000  # sampled images past which `auto` stores JPEG thumbnails


def thumbnail_encoding(configured: str, n_images: int) -> str:
    """The encoding `atlas.thumbnail_format` names for a sample of `n_images` (auto: by size)."""
    if configured == "auto":
        return "jpeg" if n_images > JPEG_PAST else "png"
    if configured not in THUMBNAIL_ENCODINGS:
        raise ValueError(
            f"atlas.thumbnail_format must be auto or one of {sorted(THUMBNAIL_ENCODINGS)}, "
            f"not {configured!r}"
        )
    return configured


def make_thumbnails(
    sample: pd.DataFrame,
    shard: int,
    size: int,
    out_path: str,
    max_skipped_fraction: float = 0.5,
    decoded_path: str | None = None,
    encoding: str = "auto",
) -> int:
    """Thumbnails (image bytes) of one shard's images; an unreadable image gets a null one."""
    rows = sample.loc[sample["shard"] == shard]
    source = ImageSource(decoded_path)
    encoding = thumbnail_encoding(encoding, len(sample))
    thumbs, failed = [], []
    for image_id, path in zip(rows["image_id"], rows["path"], strict=True):
        try:
            thumbs.append(thumbnail_png(source.load(image_id, path), size, encoding))
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
