"""`generic` (and the demo): one CSV/TSV/Parquet table, renamed by the user's `columns` map."""

from __future__ import annotations

from typing import Any

from cxratlas.ingest.manifest import read_table
from cxratlas.ingest.presets.base import Preset, RawTable


def read(spec: dict[str, Any]) -> RawTable:
    path = spec["manifest"]
    return RawTable(
        read_table(path), dict(spec.get("columns") or {}), spec.get("label_columns"), str(path)
    )


GENERIC = Preset("generic", read, summary="any table, with a column map")
DEMO = Preset("demo", read, summary="the generated phantom archive")
