"""The data contracts every stage shares, each with one writer and one reader, and atomic writes.

- manifest (`results/ingest/manifest.parquet`): which columns are findings, which attributes;
- embedding shard and merged embeddings (`results/embeddings/<model>[/shard-<i>].parquet`);
- shard report (`results/embeddings/<model>/shard-<i>.report.json`): `ShardReport`;
- reduced map (`results/reduce/<model>/reduced.parquet`): `reduced_table`;
- reduce summary (`results/reduce/<model>/summary.json`): `ReduceSummary`;
- atlas (`results/atlas/atlas.parquet`): shared columns, and per model `AtlasModelColumns`.

Every file records the model it holds; `by_model` pairs a rule's inputs by that name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EMBEDDING_META_KEY = b"cxratlas"
MANIFEST_META_KEY = b"cxratlas.ingest.manifest"


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
        pq.write_table(table, tmp, **parquet_options(table.schema))


def parquet_options(schema: pa.Schema) -> dict:
    """zstd, and dictionaries for every column but the vectors: float16 has only 65,536
    values, so Arrow builds a dictionary for them, which made a 50k x 768 shard 2.6x slower
    to write and 2x slower to read for no smaller a file."""
    vectors = (pa.types.is_list, pa.types.is_fixed_size_list, pa.types.is_large_list)
    coded = [f.name for f in schema if not any(is_(f.type) for is_ in vectors)]
    return {"compression": "zstd", "use_dictionary": coded}


def write_tsv(df, path: str | os.PathLike, **to_csv_kwargs) -> None:
    """Write a pandas DataFrame as a tab-separated table (no index) atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, **to_csv_kwargs)


def write_frame(df, path: str | os.PathLike, model: str | None = None) -> None:
    """Write a pandas DataFrame (nullable dtypes kept, no index) atomically; a per-model table
    names its `model` in the footer, for `by_model`."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if model is not None:
        meta = {**(table.schema.metadata or {}), EMBEDDING_META_KEY: json.dumps({"model": model})}
        table = table.replace_schema_metadata(meta)
    write_parquet(table, path)


def read_thumbnails(paths: list[str], ids) -> dict[str, bytes | None]:
    """The thumbnails of `ids` from the thumbnail shard files (`image_id`, `thumbnail`): what a
    contact sheet or a lead's strip shows. An id without one is absent."""
    wanted = set(ids)
    out: dict[str, bytes | None] = {}
    for path in paths:
        t = pq.read_table(path, columns=["image_id", ATLAS_IMAGE]).to_pydict()
        out |= {i: b for i, b in zip(t["image_id"], t[ATLAS_IMAGE], strict=True) if i in wanted}
    return out


def read_cluster_names(groups_path: str | os.PathLike, column: str = "name") -> dict[str, str]:
    """Group ("c3", "noise", "outliers") -> its name, from a cluster report's groups table
    (`analysis/naming.py` names them): what the report, the maps and the summary call a
    cluster; `column="label"`: its short label, what the atlas shows (a table written before
    labels existed gives its names)."""
    have = pq.read_schema(groups_path).names
    column = column if column in have else "name"
    groups = pq.read_table(groups_path, columns=["group", column]).to_pydict()
    return dict(zip(groups["group"], groups[column], strict=True))


def write_json(obj: object, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@dataclass(frozen=True)
class ManifestColumns:
    """The one record of what the manifest's columns are, written into its Parquet footer at
    ingest and asked by every later stage (atlas, EDA, probes, enrichment, label noise, report):
    `findings` are label columns (Int8: 1 / 0 / -1 uncertain / null), whatever their names;
    `attributes` are the user's categorical columns (keep_columns, a preset's extras)."""

    findings: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()

    @classmethod
    def of(cls, frame) -> ManifestColumns:
        """The columns ingest recorded on `frame.attrs` (pandas keeps attrs through copies)."""
        return cls(tuple(frame.attrs.get("findings", ())), tuple(frame.attrs.get("attributes", ())))

    def tag(self, frame):
        """`frame` with these columns recorded on its attrs; returns `frame`."""
        frame.attrs["findings"] = list(self.findings)
        frame.attrs["attributes"] = list(self.attributes)
        return frame


def write_manifest(frame, path: str | os.PathLike) -> None:
    """Write an ingested manifest with its `ManifestColumns` in the Parquet metadata."""
    cols = ManifestColumns.of(frame)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(table.schema.metadata or {})}
    meta[MANIFEST_META_KEY] = json.dumps(
        {"findings": list(cols.findings), "attributes": list(cols.attributes)}
    ).encode()
    write_parquet(table.replace_schema_metadata(meta), path)


def manifest_columns(path: str | os.PathLike) -> ManifestColumns:
    """The findings and attributes of a manifest written by `write_manifest` (footer only)."""
    meta = pq.read_schema(path).metadata or {}
    if MANIFEST_META_KEY not in meta:
        raise ValueError(f"{path}: not a CXR Atlas manifest (no {MANIFEST_META_KEY.decode()} key)")
    raw = json.loads(meta[MANIFEST_META_KEY])
    return ManifestColumns(tuple(raw["findings"]), tuple(raw["attributes"]))


def read_manifest(path: str | os.PathLike):
    """(frame, ManifestColumns) of an ingested manifest; the frame carries them on `attrs`."""
    import pandas as pd

    cols = manifest_columns(path)
    return cols.tag(pd.read_parquet(path)), cols


def reduced_table(image_ids: list[str], result, model: str, next_cluster: int = 0) -> pa.Table:
    """The reduced-map contract, one model's reduction as a table: image_id, x, y, neighbors
    (row positions in this table and cosine distances), cluster (-1 noise; ids kept across
    reruns, `reduce.stability`), outlier, pagerank. The footer names the model and the first
    cluster id never used in its maps."""
    n, k = result.knn_idx.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    neighbors = pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(offsets, pa.array(result.knn_idx.ravel(), pa.int64())),
            pa.ListArray.from_arrays(offsets, pa.array(result.knn_dist.ravel(), pa.float32())),
        ],
        names=["ids", "distances"],
    )
    return pa.table(
        {
            "image_id": pa.array(image_ids, pa.string()),
            "x": pa.array(result.xy[:, 0], pa.float32()),
            "y": pa.array(result.xy[:, 1], pa.float32()),
            "neighbors": neighbors,
            "cluster": pa.array(result.cluster, pa.int32()),
            "outlier": pa.array(result.outlier, pa.float32()),
            "pagerank": pa.array(result.pagerank, pa.float32()),
        }
    ).replace_schema_metadata(
        {EMBEDDING_META_KEY: json.dumps({"model": model, "next_cluster": next_cluster}).encode()}
    )


def png_metadata(model: str) -> dict[str, str]:
    """`savefig(metadata=...)` for a per-model PNG: a text chunk naming its model, so the file
    says which model it shows, as a Parquet footer does (`model_of`)."""
    return {EMBEDDING_META_KEY.decode(): json.dumps({"model": model})}


def png_text(path: str | os.PathLike) -> dict[str, str]:
    """A PNG's tEXt chunks (keyword -> text), read from its chunk list: every job can read a
    figure's model without an imaging library (the reduce env has none)."""
    import struct

    out = {}
    with open(path, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"{path}: not a PNG file")
        while header := f.read(8):
            length, kind = struct.unpack(">I4s", header)
            data = f.read(length)
            f.read(4)  # CRC
            if kind == b"tEXt":
                key, _, text = data.partition(b"\0")
                out[key.decode("latin-1")] = text.decode("latin-1")
            elif kind == b"IEND":
                break
    return out


def model_of(path: str | os.PathLike) -> str:
    """The model an embedding, shard, reduced-map or per-model table (its Parquet footer) or a
    per-model figure (its PNG text chunk, `png_metadata`) holds."""
    if Path(path).suffix.lower() == ".png":
        meta = json.loads(png_text(path).get(EMBEDDING_META_KEY.decode(), "{}"))
    else:
        meta = json.loads((pq.read_schema(path).metadata or {}).get(EMBEDDING_META_KEY, b"{}"))
    if not meta.get("model"):
        raise ValueError(f"{path}: records no model name; rerun the job that wrote it")
    return meta["model"]


def keyed_by(paths, name_of, what: str) -> dict[str, str]:
    """Files keyed by the name each records (`name_of(path)`), never by their position in a
    list; two files naming the same `what` is an error naming both."""
    out: dict[str, str] = {}
    for path in paths:
        name = name_of(path)
        if name in out:
            raise ValueError(f"{path} and {out[name]} both hold {what} {name!r}")
        out[name] = str(path)
    return out


def by_model(paths) -> dict[str, str]:
    """Files keyed by the model each records (never by their position in a list)."""
    return keyed_by(paths, model_of, "model")


STORAGE_TYPES = {"float32": pa.float32(), "float16": pa.float16()}


SOURCE_COLUMN = "source"  # per vector: the fingerprint of the file it was computed from


def embedding_table(
    image_ids: list[str],
    vectors: np.ndarray,
    metadata: dict | None = None,
    storage: str = "float32",
    sources: list[str | None] | None = None,
) -> pa.Table:
    """Embedding-shard contract: `image_id: string`, `embedding: fixed_size_list<float32>[d]`
    (or float16 with `storage="float16"`: half the disk, read back as float32), and with
    `sources` a `source` string per vector (path, size, mtime fingerprint: `embed.reuse`)."""
    if storage not in STORAGE_TYPES:
        raise ValueError(f"embedding storage must be float32 or float16, not {storage!r}")
    np_dtype = np.float16 if storage == "float16" else np.float32
    vectors = np.ascontiguousarray(vectors, dtype=np_dtype)
    if vectors.ndim != 2 or vectors.shape[0] != len(image_ids):
        raise ValueError(f"expected {len(image_ids)} vectors, got array of shape {vectors.shape}")
    d = vectors.shape[1]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), STORAGE_TYPES[storage]), d)
    columns = {"image_id": pa.array(image_ids, pa.string()), "embedding": emb}
    if sources is not None:
        columns[SOURCE_COLUMN] = pa.array(sources, pa.string())
    table = pa.table(columns)
    meta = {"dim": d, "storage": storage, **(metadata or {})}
    return table.replace_schema_metadata({EMBEDDING_META_KEY: json.dumps(meta).encode()})


def empty_embedding_table(dim: int, metadata: dict | None = None) -> pa.Table:
    return embedding_table([], np.zeros((0, dim), np.float32), metadata)


def read_embeddings(
    path: str | os.PathLike, rows: np.ndarray | None = None
) -> tuple[list[str], np.ndarray, dict]:
    """Read an embedding file back as (ids, float32 matrix of shape (n, d), metadata); with
    `rows` (a permutation of the stored rows), row i is stored row `rows[i]`.

    Streams record batches into one preallocated matrix (each batch's rows straight to their
    places), so the peak is the matrix plus one batch, not the matrix twice (Arrow's copy and
    NumPy's), in either order.
    """
    pf = pq.ParquetFile(path)
    meta = json.loads((pf.schema_arrow.metadata or {}).get(EMBEDDING_META_KEY, b"{}"))
    d = pf.schema_arrow.field("embedding").type.list_size
    n = pf.metadata.num_rows
    X = np.empty((n, d), np.float32)
    place = None
    if rows is not None:
        if len(rows) != n or not np.array_equal(np.sort(rows), np.arange(n)):
            raise ValueError(f"{path}: {n} rows, and the order asked for is no permutation of them")
        place = np.empty(n, np.int64)
        place[rows] = np.arange(n)  # where each stored row goes
    ids: list[str] = []
    row = 0
    for batch in pf.iter_batches(batch_size=8192):
        col = batch.column("embedding")
        values = col.flatten().to_numpy(zero_copy_only=False)
        to = slice(row, row + len(col)) if place is None else place[row : row + len(col)]
        X[to] = values.reshape(len(col), d)
        ids.extend(batch.column("image_id").to_pylist())
        row += len(col)
    if rows is not None:
        ids = [ids[r] for r in rows]
    return ids, X, meta


def merge_shards(shard_paths: list[str], out_path: str) -> int:
    """Concatenate a model's shards (in shard order) into one file, one shard in memory at a
    time; returns the row count."""
    schemas = [pq.read_schema(p) for p in shard_paths]
    types = {str(s.field("embedding").type) for s in schemas}
    if len(types) != 1:
        raise ValueError(
            f"shards disagree on the embedding dimension or type {sorted(types)}: "
            f"{shard_paths}; delete the stale ones and rerun"
        )
    meta = json.loads((schemas[0].metadata or {}).get(EMBEDDING_META_KEY, b"{}"))
    meta.pop("shard", None)
    meta["shards"] = len(shard_paths)
    # the shard with the most columns names them (a `source` column, where any shard has one)
    widest = max(schemas, key=lambda s: len(s.names))
    schema = widest.with_metadata({EMBEDDING_META_KEY: json.dumps(meta).encode()})
    seen: set[str] = set()
    rows = 0
    with (
        atomic_path(out_path) as tmp,
        pq.ParquetWriter(tmp, schema, **parquet_options(schema)) as w,
    ):
        for path in shard_paths:
            table = pq.read_table(path)
            if SOURCE_COLUMN in schema.names and SOURCE_COLUMN not in table.column_names:
                # a shard written before sources were recorded: its vectors are not reused
                table = table.append_column(SOURCE_COLUMN, pa.nulls(table.num_rows, pa.string()))
            table = table.select(schema.names).replace_schema_metadata(schema.metadata)
            ids = table.column("image_id").to_pylist()
            repeated = seen.intersection(ids) or {i for i, c in Counter(ids).items() if c > 1}
            if repeated:
                raise ValueError(
                    f"image id {sorted(repeated)[0]} appears in more than one shard: {shard_paths}"
                )
            seen.update(ids)
            w.write_table(table)
            rows += table.num_rows
    return rows


@dataclass
class ShardReport:
    """What one (model, shard) job did. `embedded`: vectors it computed; `reused`: vectors it
    took, bit for bit, from an earlier run (same image, path, file size and mtime, model entry);
    `pruned`: rows taken out since, for images that left the sample (the file holds
    embedded + reused - pruned rows). `skipped`: {image_id, reason} per unreadable image;
    `missing`: sampled images a precomputed source lacks (image models: 0)."""

    model: str
    shard: int
    images: int
    embedded: int
    dim: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    reused: int = 0
    pruned: int = 0
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    model_load_s: float = 0.0
    read_s: float = 0.0
    inference_s: float = 0.0
    write_s: float = 0.0

    @property
    def images_per_s_inference(self) -> float | None:
        return self.embedded / self.inference_s if self.inference_s else None

    def write(self, path: str | os.PathLike) -> None:
        write_json(asdict(self) | {"images_per_s_inference": self.images_per_s_inference}, path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ShardReport:
        data = json.loads(Path(path).read_text())
        data.pop("images_per_s_inference", None)  # derived
        return cls(**data)


@dataclass
class ReduceSummary:
    """One model's reduction: size, clusters, the quality measured (kNN recall against exact
    search, trustworthiness, on samples), peak memory and per-step seconds."""

    model: str
    n: int
    dim: int
    clusters: int
    noise_fraction: float
    quality: dict[str, Any]  # backend, pca, knn {method, k, recall, ...}, trustworthiness
    memory: dict[str, float | None]
    timings: dict[str, float]

    def write(self, path: str | os.PathLike) -> None:
        # flat on disk: summary["knn"]["recall"], summary["umap_s"]
        flat = {k: v for k, v in asdict(self).items() if k not in ("quality", "timings")}
        write_json({**flat, **self.quality, **self.timings}, path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ReduceSummary:
        data = json.loads(Path(path).read_text())
        own = {k: data.pop(k) for k in ("model", "clusters", "noise_fraction", "memory")}
        timings = {k: data.pop(k) for k in list(data) if k.endswith("_s")}
        n, dim = data["n"], data["dim"]
        return cls(n=n, dim=dim, quality=data, timings=timings, **own)

    @property
    def trustworthiness(self) -> float | None:
        return self.quality.get("trustworthiness")


@dataclass(frozen=True)
class AtlasModelColumns:
    """The atlas columns one model owns (docs/outputs.md, "The atlas file"). `neighbors` holds row
    positions in the atlas file and cosine distances; `cluster` is a string (`c<k>` or
    `noise`), `cluster_label` its name (`analysis/naming.py`: "c3 · LATERAL · site B 80%");
    `agreement` exists when there are two models or more."""

    model: str

    @property
    def x(self) -> str:
        return f"x_{self.model}"

    @property
    def y(self) -> str:
        return f"y_{self.model}"

    @property
    def neighbors(self) -> str:
        return f"neighbors_{self.model}"

    @property
    def cluster(self) -> str:
        return f"cluster_{self.model}"

    @property
    def cluster_label(self) -> str:
        return f"cluster_label_{self.model}"

    @property
    def outlier(self) -> str:
        return f"outlier_{self.model}"

    @property
    def pagerank(self) -> str:
        return f"pagerank_{self.model}"

    @property
    def agreement(self) -> str:
        return f"agreement_{self.model}"


def atlas_view_files(atlas_dir: str | os.PathLike, model: str) -> tuple[Path, Path]:
    """(state, labels) of the one-model view `cxr-atlas view --model <model>` opens: its
    Embedding Atlas state (that model's map, count plots, histograms) and its `--labels` table
    (x, y, text, level, priority: each cluster's name where the cluster lies on its map)."""
    views = Path(atlas_dir) / "views"
    return views / f"{model}.state.json", views / f"{model}.labels.parquet"


ATLAS_IMAGE = "thumbnail"  # PNG or JPEG bytes (atlas.thumbnail_format), one per row
ATLAS_FINDINGS = "findings"  # list of the findings positive on the image
ATLAS_AGREEMENT = "agreement"  # mean over models of the per-model agreement


def pair_agreement_column(a: str, b: str) -> str:
    """Per image, the Jaccard overlap of models a's and b's neighbour sets (a before b in the
    run's model order)."""
    return f"agreement_{a}_vs_{b}"


SLICES_PREFIX = "slices_"


def slice_column(classifier: str, model: str) -> str:
    """The atlas column listing each image's flagged error slices of a classifier on a model's
    map (`slices.across`): a list of strings like `findings`."""
    return f"{SLICES_PREFIX}{classifier}_{model}"


CALLS_PREFIX = "call_"


def classifier_calls(label, score, threshold: float) -> np.ndarray:
    """A classifier's call on each image against its label, positive at score >= threshold:
    "TP", "TN", "FP" or "FN" (the atlas's call columns, the slices' strip captions)."""
    positive = np.asarray(score, float) >= threshold
    true = np.asarray(label) == 1
    return np.where(true, np.where(positive, "TP", "FN"), np.where(positive, "FP", "TN"))


def call_column(classifier: str, finding: str) -> str:
    """The atlas column holding a classifier's call on each image for one finding at the
    threshold its error slices use: TP, TN, FP, FN, or empty where unlabelled or unscored."""
    return f"{CALLS_PREFIX}{classifier}_{finding}"


def slice_label(finding: str, slice_: str) -> str:
    """How a slice reads in the atlas and the leads: "pneumonia s1"."""
    return f"{finding} {slice_}"


def atlas_models(path: str | os.PathLike) -> list[str]:
    """The models an atlas file holds, in column order."""
    names = pq.read_schema(path).names
    return [n[2:] for n in names if n.startswith("x_") and f"y_{n[2:]}" in names]


CLASSIFIER_META_KEY = b"cxratlas.classifier"
# a classifier's predictions, one long table (`slices.classifiers`): every finding it scores
CLASSIFIER_COLUMNS = ("classifier", "finding", "image_id", "label", "score")


def write_classifier(df, path: str | os.PathLike, classifier: str) -> None:
    """Write one classifier's long table (`CLASSIFIER_COLUMNS`: label int8 0/1 from the
    manifest, score float64), its name in the footer, for `by_classifier`."""
    table = pa.Table.from_pandas(df[list(CLASSIFIER_COLUMNS)], preserve_index=False)
    meta = {**(table.schema.metadata or {}), CLASSIFIER_META_KEY: json.dumps({"name": classifier})}
    write_parquet(table.replace_schema_metadata(meta), path)


def classifier_of(path: str | os.PathLike) -> str:
    """The classifier a table written by `write_classifier` holds, as its footer records it."""
    meta = (pq.read_schema(path).metadata or {}).get(CLASSIFIER_META_KEY)
    if meta is None:
        raise ValueError(f"{path}: records no classifier name; rerun the job that wrote it")
    return json.loads(meta)["name"]


def by_classifier(paths) -> dict[str, str]:
    """Classifier tables keyed by the classifier each records (never by list position)."""
    return keyed_by(paths, classifier_of, "classifier")
