"""Keeping patient identifiers out of results: salted hashes at ingest, identifier columns that
are never carried, and a scan of every output for identifier values.

Hashing happens once, in ingest, so no later file (sample, embeddings, atlas, report, logs) ever
holds a raw patient or study id. Probes still group by patient: equal ids hash equally.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ID_COLUMNS = ("patient_id", "study_id")
TEXT_SUFFIXES = (".json", ".tsv", ".csv", ".txt", ".log", ".html", ".yaml", ".rst", ".svg")


def hash_id(value: Any, salt: str) -> str | None:
    """16 hex digits of SHA-256(salt:value); missing stays missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()[:16]


def hash_ids(manifest: pd.DataFrame, salt: str) -> pd.DataFrame:
    """The manifest with patient and study ids replaced by their salted hashes."""
    out = manifest.copy()
    for col in ID_COLUMNS:
        if col in out:
            out[col] = pd.array([hash_id(v, salt) for v in out[col]], dtype="string")
    return out


def check_identifier_columns(
    specs: list[dict[str, Any]], identifiers: list[str], ids_hashed: bool = True
) -> None:
    """Refuse a config that would carry a declared identifier column into the results (as a
    patient or study id it may only travel hashed)."""
    banned = set(identifiers)
    for spec in specs:
        name = spec.get("name")
        carried = {
            "keep_columns": list(spec.get("keep_columns") or []),
            "label_columns": list(spec.get("label_columns") or []),
        }
        for key, original in (spec.get("columns") or {}).items():
            if key not in ID_COLUMNS or not ids_hashed:
                carried.setdefault("columns", []).append(original)
        for i, table in enumerate(spec.get("tables") or []):
            cols = table.get("columns") or []
            carried[f"tables[{i}].columns"] = list(
                cols.values() if isinstance(cols, dict) else cols
            )
        for where, columns in carried.items():
            hit = sorted(banned.intersection(columns))
            if hit:
                raise ValueError(
                    f"dataset {name!r}: {where} names {hit}, listed in privacy.identifiers; "
                    "identifiers never leave the source tables"
                )


def _texts(path: Path) -> Iterable[tuple[str, str]]:
    """(where, text) pieces of one output file that could hold an identifier."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        for name in table.column_names:
            col = table.column(name)
            yield f"column {name!r}", json.dumps(col.to_pylist(), default=str)
        yield (
            "metadata",
            json.dumps({str(k): str(v) for k, v in (table.schema.metadata or {}).items()}),
        )
    elif suffix in TEXT_SUFFIXES or suffix == "":
        yield "text", path.read_text(errors="replace")
    else:  # images and binaries: their raw bytes (PNG text chunks are not compressed)
        yield "bytes", path.read_bytes().decode("latin-1")


def find_identifiers(
    roots: list[str | os.PathLike], values: Iterable[str], min_length: int = 4
) -> list[dict[str, str]]:
    """Every (file, place, value) where one of `values` appears under `roots`. Values shorter
    than `min_length` are skipped: they would match by chance."""
    needles = sorted({str(v) for v in values if v is not None and len(str(v)) >= min_length})
    hits = []
    for root in roots:
        files = [Path(root)] if Path(root).is_file() else sorted(Path(root).rglob("*"))
        for path in files:
            if not path.is_file():
                continue
            for where, text in _texts(path):
                for value in needles:
                    if value in text:
                        hits.append({"file": str(path), "where": where, "value": value})
    return hits
