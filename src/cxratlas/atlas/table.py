"""The atlas: one wide Parquet file for Embedding Atlas, and a state with a linked view per model.

Contract (`io.AtlasModelColumns`; docs/outputs.md, "The atlas file"): shared metadata and one PNG
thumbnail per row, and per model `x_<m>`, `y_<m>`, `neighbors_<m>` (struct of row positions in
THIS file and cosine distances), `cluster_<m>` (string), `outlier_<m>`, `pagerank_<m>`. Labels
are strings and no column is dictionary-encoded, so every one is chartable.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxratlas.atlas.labels import label_column, map_labels
from cxratlas.atlas.state import atlas_state
from cxratlas.ingest.privacy import ID_COLUMNS
from cxratlas.io import (
    ATLAS_AGREEMENT,
    ATLAS_FINDINGS,
    ATLAS_IMAGE,
    AtlasModelColumns,
    atlas_view_files,
    call_column,
    classifier_calls,
    pair_agreement_column,
    read_cluster_names,
    read_manifest,
    slice_column,
    slice_label,
    write_json,
    write_parquet,
)
from cxratlas.reduce.neighbours import agreement, aligned_neighbours, knn_jaccard
from cxratlas.subgroups import age_band

log = logging.getLogger(__name__)

LABEL_STRINGS = {1: "positive", 0: "negative", -1: "uncertain"}
NOT_MENTIONED = "not_mentioned"


def _remap_neighbors(col: pa.StructArray, local_to_atlas: np.ndarray) -> pa.StructArray:
    """Map a model's local row positions to atlas rows, dropping neighbours not in the atlas."""
    ids = col.field("ids")
    dists = col.field("distances")
    offsets = ids.offsets.to_numpy()
    flat = local_to_atlas[ids.flatten().to_numpy()]
    flat_d = dists.flatten().to_numpy()
    keep = flat >= 0
    counts = (
        np.add.reduceat(keep.astype(np.int64), offsets[:-1])
        if len(flat)
        else np.zeros(len(col), np.int64)
    )
    new_offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(new_offsets, pa.array(flat[keep], pa.int64())),
            pa.ListArray.from_arrays(new_offsets, pa.array(flat_d[keep], pa.float32())),
        ],
        names=["ids", "distances"],
    )


def build_atlas(
    sample_path: str,
    manifest_path: str,
    reduced: dict[str, str],
    thumbnail_paths: list[str],
    out_path: str,
    state_path: str,
    metadata_columns: list[str],
    ids_hashed: bool = True,
    names: dict[str, str] | None = None,
    slices: SliceFiles | None = None,
) -> dict[str, Any]:
    """Join the sample, its metadata, thumbnails and every model's reduction into the atlas.

    `names`: per model, its cluster report's groups table (`group`, `name`): the cluster names
    the atlas shows (without one, a cluster is named by its id). `slices`: the error slices'
    table and members (`slices.across`): a column per classifier and model lists each image's
    flagged slices ("pneumonia s1"); with the classifiers' predictions, a column per classifier
    and finding holds its call on each image (TP, TN, FP, FN). Beside the state, each model's
    one-model view (`io.atlas_view_files`) is written, its cluster names placed on its map.

    `metadata_columns` is the privacy allow-list; patient/study ids arrive hashed from ingest
    (`ids_hashed`) and are named `<column>_hash` so nobody mistakes them for raw ids."""
    sample = pd.read_parquet(sample_path, columns=["image_id"])
    manifest, columns = read_manifest(manifest_path)
    tables = {m: pq.read_table(p) for m, p in reduced.items()}
    ids = _common_ids(sample["image_id"].tolist(), tables)
    meta = manifest.set_index("image_id").reindex(ids)
    cols: dict[str, pa.Array] = {"image_id": pa.array(ids, pa.string())}
    cols[ATLAS_IMAGE] = _thumbnails(thumbnail_paths, ids)
    cols |= _metadata(meta, metadata_columns, ids_hashed)
    cols |= _findings(meta, [c for c in columns.findings if c in meta.columns])
    summary: dict[str, Any] = {"rows": len(ids), "dropped": len(sample) - len(ids), "models": {}}
    pos = pd.Series(np.arange(len(ids)), index=ids)
    named = {m: read_cluster_names(names[m], "label") if names else {} for m in tables}
    for m, t in tables.items():
        model_cols, summary["models"][m] = _model_columns(AtlasModelColumns(m), t, pos, named[m])
        cols |= model_cols
    if len(tables) > 1:
        cols |= _agreement(tables, ids)
    if slices:
        table = pd.read_parquet(slices.table)
        found = slice_columns(table, pd.read_parquet(slices.members), ids)
        cols |= {k: pa.array(v, pa.list_(pa.string())) for k, v in found.items()}
        cols |= {k: pa.array(v, pa.string()) for k, v in call_columns(
            table, [pd.read_parquet(p) for p in slices.classifiers], ids).items()}  # fmt: skip
    write_parquet(pa.table(cols), out_path)
    write_json(atlas_state(list(reduced), cols, columns.attributes), state_path)
    for m in tables:
        _write_view(Path(state_path).parent, m, cols, columns.attributes, named[m])
    summary["command"] = f"cxr-atlas view {out_path}"  # Embedding Atlas, every model linked
    log.info("atlas: %d rows, %d columns -> %s", len(ids), len(cols), out_path)
    log.info("open it with: %s", summary["command"])
    return summary


def _common_ids(sample_ids: list[str], tables: dict[str, pa.Table]) -> list[str]:
    """The sampled images every model embedded, in sample order."""
    present = set(sample_ids)
    for t in tables.values():
        present &= set(t.column("image_id").to_pylist())
    ids = [i for i in sample_ids if i in present]
    if len(ids) < len(sample_ids):
        log.warning(
            "%d sampled images are missing from at least one model (skipped images); "
            "the atlas holds the %d every model embedded",
            len(sample_ids) - len(ids),
            len(ids),
        )
    return ids


def _thumbnails(paths: list[str], ids: list[str]) -> pa.ChunkedArray:
    """The thumbnails in atlas row order, kept as Arrow buffers, one chunk per shard: at a
    million rows Python bytes objects would cost several times the gigabytes of image bytes,
    and one chunk would pass the 2 GiB a binary array can hold."""
    thumbs = pa.concat_tables([pq.read_table(p, columns=["image_id", "thumbnail"]) for p in paths])
    have = thumbs.column("image_id").to_pylist()
    wanted = set(ids)
    keep = np.fromiter((h in wanted for h in have), bool, len(have))
    if [h for h, k in zip(have, keep, strict=True) if k] == ids:  # sample order, some dropped
        return thumbs.column("thumbnail").filter(pa.array(keep))  # chunk by chunk, no join
    # out of order or missing (not what the workflow writes): one reordered large_binary array
    pos = pd.Series(np.arange(len(have)), index=have).reindex(ids)
    take = pa.array(pos.fillna(0).to_numpy(np.int64), mask=pos.isna().to_numpy())
    column = thumbs.column("thumbnail").cast(pa.large_binary()).take(take)  # 64-bit offsets
    return column.cast(pa.binary()) if column.nbytes < 2**31 - 2**20 else column


def _metadata(meta: pd.DataFrame, allowed: list[str], ids_hashed: bool) -> dict[str, pa.Array]:
    """The allow-listed metadata: age and year as integers, ids as `<column>_hash`, the rest
    as strings with `unknown` for gaps."""
    cols: dict[str, pa.Array] = {}
    for col in allowed:
        if col not in meta.columns:
            log.warning("atlas.metadata_columns: %r is not in the manifest; left out", col)
            continue
        values = meta[col]
        if col == "age":
            cols[col] = pa.array(values.astype("Float32").round().astype("Int16"), pa.int16())
            # the audit's bands, so a map can be coloured by them
            cols["age_band"] = pa.array(age_band(values).fillna("unknown").tolist(), pa.string())
        elif col == "study_year":
            cols[col] = pa.array(values.astype("Int16"), pa.int16())
        elif col in ID_COLUMNS and ids_hashed:
            cols[f"{col}_hash"] = pa.array(values.astype("string").tolist(), pa.string())
        else:
            cols[col] = pa.array(values.astype("string").fillna("unknown").tolist(), pa.string())
    return cols


def _findings(meta: pd.DataFrame, labels: list[str]) -> dict[str, pa.Array]:
    """Each finding as a string column, and `findings`: the list positive on each image."""
    cols: dict[str, pa.Array] = {}
    findings: list[list[str]] = [[] for _ in range(len(meta))]
    for label in labels:
        values = meta[label].astype("Int8")
        strings = values.map(LABEL_STRINGS).astype("string").fillna(NOT_MENTIONED)
        cols[label] = pa.array(strings.tolist(), pa.string())
        for i in np.flatnonzero((values == 1).fillna(False).to_numpy()):
            findings[i].append(label)
    if labels:
        cols[ATLAS_FINDINGS] = pa.array(findings, pa.list_(pa.string()))
    return cols


def _write_view(atlas_dir: Path, model: str, cols: dict, attributes, names: dict) -> None:
    """One model's view for `cxr-atlas view --model`: Embedding Atlas 0.26 draws one labels
    table on every embedding view (each reads `embeddingViewLabels`), so names go on a map
    only where that map is the only one."""
    c = AtlasModelColumns(model)
    state_path, labels_path = atlas_view_files(atlas_dir, model)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(atlas_state([model], cols, attributes), state_path)  # that model's charts only
    cluster = np.array([int(v[1:]) if v != "noise" else -1 for v in cols[c.cluster].to_pylist()])
    x, y = (cols[k].to_numpy(zero_copy_only=False) for k in (c.x, c.y))
    write_parquet(pa.Table.from_pandas(map_labels(x, y, cluster, names), preserve_index=False),
                  labels_path)  # fmt: skip


def _model_columns(
    c: AtlasModelColumns, t: pa.Table, pos: pd.Series, names: dict[str, str]
) -> tuple[dict[str, pa.Array], dict[str, Any]]:
    """One model's reduced map in atlas row order, its neighbours renumbered to atlas rows."""
    ids = pos.index
    local_ids = t.column("image_id").to_pylist()
    order = pos.reindex(local_ids).to_numpy()
    local_to_atlas = np.where(np.isnan(order), -1, order).astype(np.int64)
    take = pa.array(pd.Series(np.arange(len(local_ids)), index=local_ids).loc[ids].to_numpy())
    sub = t.take(take)
    cluster = sub.column("cluster").to_numpy()
    cols = {
        c.x: sub.column("x").combine_chunks(),
        c.y: sub.column("y").combine_chunks(),
        c.neighbors: _remap_neighbors(sub.column("neighbors").combine_chunks(), local_to_atlas),
        c.cluster: pa.array([f"c{k}" if k >= 0 else "noise" for k in cluster]),
        c.cluster_label: pa.array(label_column(cluster, names), pa.string()),
        c.outlier: sub.column("outlier").combine_chunks(),
        c.pagerank: sub.column("pagerank").combine_chunks(),
    }
    summary = {
        "embedded": t.num_rows,  # what this model covered before the intersection
        "clusters": int(len(set(cluster.tolist()) - {-1})),
        "noise_fraction": float((cluster == -1).mean()) if len(ids) else 0,
    }
    return cols, summary


@dataclass(frozen=True)
class SliceFiles:
    """What the atlas reads of the error slices (`slices.across`) and the classifiers'
    predictions (`results/classifiers/<name>.parquet`)."""

    table: str
    members: str
    classifiers: tuple[str, ...] = ()


def call_columns(table: pd.DataFrame, predictions: list[pd.DataFrame], ids: list[str]) -> dict:
    """Per classifier and finding with a threshold (the one its slices were scored at), each
    image's call against its label (`io.call_column`): colour a map by where it is wrong."""
    thresholds = table.dropna(subset=["threshold"]).drop_duplicates(["classifier", "finding"])
    at = thresholds.set_index(["classifier", "finding"])["threshold"]
    out = {}
    for pred in predictions:
        for (classifier, finding), rows in pred.groupby(["classifier", "finding"], sort=False):
            if (classifier, finding) not in at.index:
                continue
            call = classifier_calls(rows["label"], rows["score"], at[(classifier, finding)])
            by_id = pd.Series(call, index=rows["image_id"].to_numpy())
            out[call_column(classifier, finding)] = [
                None if pd.isna(v) else v for v in by_id.reindex(ids)
            ]
    return out


def slice_columns(table: pd.DataFrame, members: pd.DataFrame, ids: list[str]) -> dict:
    """The error slices' columns (`io.slice_column`): per classifier and model, each image's
    flagged slices ("pneumonia s1", a list like `findings`: an image can fail in several
    findings), for the classifiers and models with at least one. `table` and `members` are
    `results/analysis/slices/slices.parquet` and `members.parquet`."""
    key = ["classifier", "finding", "model", "slice"]
    flagged = table.loc[table["flagged"].fillna(False).astype(bool), key]
    held = members.merge(flagged)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    out = {}
    for (classifier, model), rows in held.groupby(["classifier", "model"], sort=False):
        lists: list[list[str]] = [[] for _ in ids]
        at = pos.reindex(rows["image_id"]).to_numpy()
        for i, r in zip(at, rows.itertuples(index=False), strict=True):
            if not np.isnan(i):
                lists[int(i)].append(slice_label(r.finding, r.slice))
        out[slice_column(classifier, model)] = lists
    return out


def _agreement(tables: dict[str, pa.Table], ids: list[str]) -> dict[str, pa.Array]:
    """How much of each point's neighbourhood the other models keep, per model and averaged."""
    common = pd.Index(ids)
    nbrs = {m: aligned_neighbours(t, common)[0] for m, t in tables.items()}
    per_model = agreement(nbrs)
    cols = {AtlasModelColumns(m).agreement: pa.array(s, pa.float32()) for m, s in per_model.items()}
    cols[ATLAS_AGREEMENT] = pa.array(np.mean(list(per_model.values()), axis=0), pa.float32())
    for a, b in itertools.combinations(nbrs, 2):  # where exactly two models part ways
        jaccard = knn_jaccard(nbrs[a], nbrs[b]).astype(np.float32)
        cols[pair_agreement_column(a, b)] = pa.array(jaccard, pa.float32())
    return cols
