"""`emory`: a base table with one row per image, then `tables` keyed by image or patient id, each
joined by a column map (Emory-CXR-style findings, demographics, social-determinant tables)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from cxratlas.ingest.manifest import ManifestError, apply_column_map, read_table
from cxratlas.ingest.presets.base import Preset, RawTable

log = logging.getLogger(__name__)


def read(spec: dict[str, Any]) -> RawTable:
    """The base table renamed by `columns`, then each of `tables` left-joined on its key."""
    source = str(spec["manifest"])
    # renamed first: the tables join on canonical keys (image_id, patient_id)
    table = apply_column_map(read_table(spec["manifest"]), spec.get("columns"), source)
    labels = list(spec.get("label_columns") or [])
    for i, t in enumerate(spec.get("tables") or []):
        table = join_table(table, t, f"dataset.tables[{i}]")
        if t.get("labels"):
            labels += [c for c in table_columns(t).values() if c not in labels]
    return RawTable(table, {}, labels or None, source)


def table_columns(t: dict[str, Any]) -> dict[str, str]:
    """A table's `columns` as original -> name in the manifest."""
    cols = t.get("columns")
    if cols is None:
        return {}
    if isinstance(cols, list):
        return {c: c for c in cols}
    return {original: name for name, original in cols.items()}


def join_table(table: pd.DataFrame, t: dict[str, Any], where: str) -> pd.DataFrame:
    """Left-join one of `tables` on its key, one row per key; its text gaps become ''."""
    path, key = str(t["path"]), t["key"]
    other, cols = _checked_table(table, t, where)
    other = other[[t.get("key_column") or key, *cols]].rename(
        columns={t.get("key_column") or key: key, **cols}
    )
    other[key] = other[key].astype(str)
    dup = other[key].duplicated()
    if dup.any():
        raise ManifestError(
            f"{path}: row {int(dup.to_numpy().argmax()) + 2}: {key} "
            f"{other.loc[dup, key].iloc[0]!r} appears more than once ({where} joins one row per "
            f"{key}; deduplicate it first)"
        )
    joined = table.astype({key: str}).merge(other, on=key, how="left")
    unmatched = joined[list(cols.values())].isna().all(axis=1).sum() if cols else 0
    if unmatched:
        log.warning("%s: %d manifest rows have no row in %s", where, unmatched, path)
    for name in cols.values():
        if joined[name].dtype == object:
            joined[name] = joined[name].fillna("")
    return joined


def _checked_table(
    table: pd.DataFrame, t: dict[str, Any], where: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The joined table and its column map, after every key and column it names is checked."""
    path, key = str(t["path"]), t["key"]
    other = read_table(path)
    on = t.get("key_column") or key
    if key not in table.columns:
        raise ManifestError(f"{where} ({path}): key {key!r} is not a manifest column")
    if on not in other.columns:
        raise ManifestError(
            f"{path}: join column {on!r} ({where}.key_column) not found; "
            f"columns are {list(other.columns)}"
        )
    cols = table_columns(t) or {c: c for c in other.columns if c != on}
    absent = [c for c in cols if c not in other.columns]
    if absent:
        raise ManifestError(
            f"{path}: column(s) {absent} ({where}.columns) not found; "
            f"columns are {list(other.columns)}"
        )
    clash = [n for n in cols.values() if n in table.columns and n != key]
    if clash:
        raise ManifestError(
            f"{path}: column(s) {clash} ({where}) already in the manifest; rename them with a "
            "mapping in columns, e.g. {new_name: original}"
        )
    return other, cols


EMORY = Preset(
    "emory",
    read,
    inputs=lambda spec: [
        str(spec["manifest"]),
        *(str(t["path"]) for t in spec.get("tables") or []),
    ],
    summary="a base table plus joined per-image / per-patient tables",
)
