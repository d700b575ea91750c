"""The atlas: one wide Parquet file for Embedding Atlas, and a state with a linked view per model.

Contract (see README, "The atlas file"): shared metadata and one PNG thumbnail per row, and per
model `x_<m>`, `y_<m>`, `neighbors_<m>` (struct of row positions in THIS file and cosine
distances), `cluster_<m>` (string), `outlier_<m>`, `pagerank_<m>`. Labels are strings and no
column is dictionary-encoded, so every one is chartable.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxratlas.ingest.privacy import ID_COLUMNS
from cxratlas.io import read_manifest, write_json, write_parquet
from cxratlas.reduce.neighbours import agreement, aligned_neighbours

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
) -> dict[str, Any]:
    """Join the sample, its metadata, thumbnails and every model's reduction into the atlas.

    `metadata_columns` is the privacy allow-list; patient/study ids arrive hashed from ingest
    (`ids_hashed`) and are named `<column>_hash` so nobody mistakes them for raw ids."""
    sample = pd.read_parquet(sample_path, columns=["image_id"])
    manifest, columns = read_manifest(manifest_path)
    manifest = manifest.set_index("image_id")
    tables = {m: pq.read_table(p) for m, p in reduced.items()}
    present = set(sample["image_id"])
    for t in tables.values():
        present &= set(t.column("image_id").to_pylist())
    ids = [i for i in sample["image_id"] if i in present]
    dropped = len(sample) - len(ids)
    if dropped:
        log.warning(
            "%d sampled images are missing from at least one model (skipped images); "
            "the atlas holds the %d every model embedded",
            dropped,
            len(ids),
        )
    pos = pd.Series(np.arange(len(ids)), index=ids)

    cols: dict[str, pa.Array] = {"image_id": pa.array(ids, pa.string())}
    thumbs = pd.concat([pd.read_parquet(p) for p in thumbnail_paths]).set_index("image_id")
    cols["thumbnail"] = pa.array(thumbs["thumbnail"].reindex(ids).tolist(), pa.binary())
    meta = manifest.reindex(ids)
    for col in metadata_columns:
        if col not in meta.columns:
            log.warning("atlas.metadata_columns: %r is not in the manifest; left out", col)
            continue
        values = meta[col]
        if col == "age":
            cols[col] = pa.array(values.astype("Float32").round().astype("Int16"), pa.int16())
        elif col == "study_year":
            cols[col] = pa.array(values.astype("Int16"), pa.int16())
        elif col in ID_COLUMNS and ids_hashed:
            cols[f"{col}_hash"] = pa.array(values.astype("string").tolist(), pa.string())
        else:
            cols[col] = pa.array(values.astype("string").fillna("unknown").tolist(), pa.string())
    labels = [c for c in columns.findings if c in meta.columns]
    findings = [[] for _ in ids]
    for label in labels:
        values = meta[label].astype("Int8")
        strings = values.map(LABEL_STRINGS).astype("string").fillna(NOT_MENTIONED)
        cols[label] = pa.array(strings.tolist(), pa.string())
        for i in np.flatnonzero((values == 1).fillna(False).to_numpy()):
            findings[i].append(label)
    if labels:
        cols["findings"] = pa.array(findings, pa.list_(pa.string()))

    summary: dict[str, Any] = {"rows": len(ids), "dropped": dropped, "models": {}}
    for m, t in tables.items():
        local_ids = t.column("image_id").to_pylist()
        order = pos.reindex(local_ids).to_numpy()
        local_to_atlas = np.where(np.isnan(order), -1, order).astype(np.int64)
        take = pa.array(pd.Series(np.arange(len(local_ids)), index=local_ids).loc[ids].to_numpy())
        sub = t.take(take)
        cluster = sub.column("cluster").to_numpy()
        cols[f"x_{m}"] = sub.column("x").combine_chunks()
        cols[f"y_{m}"] = sub.column("y").combine_chunks()
        cols[f"neighbors_{m}"] = _remap_neighbors(
            sub.column("neighbors").combine_chunks(), local_to_atlas
        )
        cols[f"cluster_{m}"] = pa.array([f"c{c}" if c >= 0 else "noise" for c in cluster])
        cols[f"outlier_{m}"] = sub.column("outlier").combine_chunks()
        cols[f"pagerank_{m}"] = sub.column("pagerank").combine_chunks()
        summary["models"][m] = {
            "embedded": t.num_rows,  # what this model covered before the intersection
            "clusters": int(len(set(cluster.tolist()) - {-1})),
            "noise_fraction": float((cluster == -1).mean()) if len(ids) else 0,
        }
    if len(tables) > 1:  # how much of each point's neighbourhood the other models keep
        common = pd.Index(ids)
        per_model = agreement({m: aligned_neighbours(t, common)[0] for m, t in tables.items()})
        for m, score in per_model.items():
            cols[f"agreement_{m}"] = pa.array(score, pa.float32())
        cols["agreement"] = pa.array(np.mean(list(per_model.values()), axis=0), pa.float32())
    write_parquet(pa.table(cols), out_path)
    write_json(atlas_state(list(reduced), cols, columns.attributes), state_path)
    summary["command"] = f"cxr-atlas view {out_path}"  # Embedding Atlas, every model linked
    log.info("atlas: %d rows, %d columns -> %s", len(ids), len(cols), out_path)
    log.info("open it with: %s", summary["command"])
    return summary


def atlas_state(
    models: list[str], cols: dict[str, Any], attributes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Embedding Atlas `--state`: one linked embedding view per model, then the key charts
    (the user's attributes, e.g. site or race, get count plots next to view and vendor)."""
    charts: dict[str, Any] = {}
    for i, m in enumerate(models, start=1):
        charts[str(i)] = {
            "type": "embedding",
            "title": f"{m}",
            "data": {
                "x": f"x_{m}",
                "y": f"y_{m}",
                "image": "thumbnail",
                "neighbors": f"neighbors_{m}",
                "importance": f"pagerank_{m}",
                "category": f"cluster_{m}",
            },
        }
    n = len(charts)
    fields = ("dataset", "view_position", "manufacturer", *attributes)
    for field in (*dict.fromkeys(fields), *(f"cluster_{m}" for m in models)):
        if field in cols:
            n += 1
            charts[str(n)] = {"type": "count-plot", "title": field, "data": {"field": field}}
    if "findings" in cols:
        n += 1
        charts[str(n)] = {
            "type": "count-plot",
            "title": "findings",
            "data": {"field": "findings", "isList": True},
        }
    # brushing a histogram selects, e.g., the images the models disagree on, in every view
    for field in ("agreement", *(f"outlier_{m}" for m in models)):
        if field in cols:
            n += 1
            charts[str(n)] = histogram(field)
    charts[str(n + 1)] = {"type": "instances", "title": "Images"}
    return {"charts": charts}


def histogram(field: str) -> dict[str, Any]:
    """A brushable histogram chart, in the spec Embedding Atlas 0.26 builds for numeric columns
    by default (its charts have no `type`, only layers)."""
    bars = {"mark": "bar", "encoding": {"x": {"field": field}, "y": {"aggregate": "count"}}}
    return {
        "title": field,
        "layers": [
            {**bars, "style": {"fillColor": "$markColorFade"}},
            {**bars, "filter": "$filter"},
        ],
        "selection": {"brush": {"encoding": "x"}},
        "widgets": [
            {"type": "scale.type", "channel": "x"},
            {"type": "encoding.normalize", "attribute": "y", "layer": [0, 1], "options": ["x"]},
        ],
    }
