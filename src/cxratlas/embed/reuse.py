"""Vectors an earlier run computed, taken bit for bit instead of embedding the image again.

A vector is reused when the model's merged file from the last run holds it for the same image id
and the same source (path, file size and mtime: `source_key`), and that file was written for the
same model entry and fitted state (`entry_sha`) in the same storage type. Whatever shard the
image sits in now: a resharded or regrown sample costs no GPU time for the images it kept.

Why the merged file: Snakemake deletes a job's own outputs before it runs, so a shard cannot read
its previous self; the merged file is the downstream output, still there while the shards run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cxratlas.io import EMBEDDING_META_KEY, SOURCE_COLUMN

log = logging.getLogger(__name__)


def source_key(path: str) -> str | None:
    """A fingerprint of the file an image is read from (path, size, mtime); None if it is
    missing (the reader records why)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:20]


def entry_sha(entry: dict[str, Any], state: str | None = None) -> str:
    """The model entry and its fitted state: vectors made under another are never reused."""
    h = hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode())
    if state:
        h.update(Path(state).read_bytes())
    return h.hexdigest()[:20]


@dataclass
class Earlier:
    """The reusable vectors for a shard's rows: image id -> row of `matrix`; `meta` is the
    earlier file's metadata (it describes the model, so nothing needs loading to write)."""

    rows: dict[str, int]
    matrix: np.ndarray
    meta: dict[str, Any]

    @classmethod
    def none(cls) -> Earlier:
        return cls({}, np.zeros((0, 0), np.float32), {})


def earlier_vectors(
    path: str | None, ids: list[str], keys: list[str | None], sha: str, storage: str
) -> Earlier:
    """The vectors of `ids` that `path` (a model's merged file) holds for the same source keys,
    entry and storage."""
    if not path or not Path(path).exists():
        return Earlier.none()
    pf = pq.ParquetFile(path)
    meta = json.loads((pf.schema_arrow.metadata or {}).get(EMBEDDING_META_KEY, b"{}"))
    if (
        meta.get("entry_sha") != sha
        or meta.get("storage") != storage
        or SOURCE_COLUMN not in pf.schema_arrow.names
    ):
        return Earlier.none()
    wanted = {i: k for i, k in zip(ids, keys, strict=True) if k}
    table = pq.read_table(
        path, filters=pc.field("image_id").isin(pa.array(list(wanted), pa.string()))
    )
    found = table.column("image_id").to_pylist()
    sources = table.column(SOURCE_COLUMN).to_pylist()
    same = [j for j, (i, s) in enumerate(zip(found, sources, strict=True)) if wanted[i] == s]
    col = table.column("embedding").combine_chunks().take(pa.array(same, pa.int64()))
    d = pf.schema_arrow.field("embedding").type.list_size
    values = col.flatten().to_numpy(zero_copy_only=False)
    matrix = values.reshape(len(same), d)  # float16 stays float16: rewritten bit for bit
    meta.pop("shards", None)
    return Earlier({found[j]: r for r, j in enumerate(same)}, matrix, meta)


def split_rows(rows: pd.DataFrame, earlier: Earlier) -> pd.DataFrame:
    """The rows that must be embedded now."""
    return rows.loc[~rows["image_id"].isin(earlier.rows)].reset_index(drop=True)


def planned_embeddings(
    rows: pd.DataFrame, merged: str, entry: dict[str, Any], state: str | None, storage: str
) -> int:
    """How many of `rows` (the shards a run will embed for one model) will be embedded rather
    than reused: what the dry run says per model. A fitted state still to be fitted reuses
    nothing."""
    if state and not Path(state).exists():
        return len(rows)
    keys = [source_key(p) for p in rows["path"]]
    sha = entry_sha(entry, state)
    earlier = earlier_vectors(merged, rows["image_id"].tolist(), keys, sha, storage)
    return len(rows) - len(earlier.rows)
