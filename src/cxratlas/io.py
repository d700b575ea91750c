"""Parquet and file helpers shared by every stage: atomic writes, the embedding-shard contract."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

EMBEDDING_META_KEY = b"cxratlas"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    A job killed mid-write leaves a `.tmp` file that no rule names as output, never a file at
    `path` that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    """Write `table` to `path` atomically, zstd-compressed."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_frame(df, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame (nullable dtypes kept, no index) atomically."""
    write_parquet(pa.Table.from_pandas(df, preserve_index=False), path)


def write_json(obj: object, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def embedding_table(
    image_ids: list[str], vectors: np.ndarray, metadata: dict | None = None
) -> pa.Table:
    """Embedding-shard contract: `image_id: string`, `embedding: fixed_size_list<float32>[d]`."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(image_ids):
        raise ValueError(f"expected {len(image_ids)} vectors, got array of shape {vectors.shape}")
    d = vectors.shape[1]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), d)
    table = pa.table({"image_id": pa.array(image_ids, pa.string()), "embedding": emb})
    meta = {"dim": d, **(metadata or {})}
    return table.replace_schema_metadata({EMBEDDING_META_KEY: json.dumps(meta).encode()})


def empty_embedding_table(dim: int, metadata: dict | None = None) -> pa.Table:
    return embedding_table([], np.zeros((0, dim), np.float32), metadata)


def read_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray, dict]:
    """Read an embedding file back as (ids, float32 matrix of shape (n, d), metadata)."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(EMBEDDING_META_KEY, b"{}"))
    col = table.column("embedding").combine_chunks()
    d = col.type.list_size
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return table.column("image_id").to_pylist(), values.reshape(len(col), d), meta


def merge_shards(shard_paths: list[str], out_path: str) -> int:
    """Concatenate a model's shards (in shard order) into one file; returns the row count."""
    tables = [pq.read_table(p) for p in shard_paths]
    dims = {t.schema.field("embedding").type.list_size for t in tables}
    if len(dims) != 1:
        raise ValueError(
            f"shards disagree on the embedding dimension {sorted(dims)}: "
            f"{shard_paths}; delete the stale ones and rerun"
        )
    merged = pa.concat_tables(tables)
    counts = pc.value_counts(merged.column("image_id"))
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        raise ValueError(
            f"image id {repeated[0]['values']} appears in more than one shard: {shard_paths}"
        )
    meta = json.loads((tables[0].schema.metadata or {}).get(EMBEDDING_META_KEY, b"{}"))
    meta.pop("shard", None)
    meta["shards"] = len(shard_paths)
    write_parquet(
        merged.replace_schema_metadata({EMBEDDING_META_KEY: json.dumps(meta).encode()}), out_path
    )
    return merged.num_rows
