"""What every dataset preset provides, and the checks they share.

A preset turns a dataset's own files, in their public layout, into one raw table that
`ingest_manifest` normalises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd

from cxratlas.ingest.manifest import ManifestError


class RawTable(NamedTuple):
    """A preset's output: the table, a column map still to apply, its label columns (None: let
    ingest recognise them) and the name of the file it came from, for error messages."""

    table: pd.DataFrame
    columns: dict[str, str]
    labels: list[str] | None
    source: str


@dataclass(frozen=True)
class Preset:
    """One dataset layout. `read` builds the raw table; `extra_columns` names columns the preset
    adds beyond the canonical ones (kept like `keep_columns`); `inputs` lists every file it reads,
    so a change to any of them re-plans ingest."""

    name: str
    read: Callable[[dict[str, Any]], RawTable]
    extra_columns: Callable[[dict[str, Any]], list[str]] = lambda spec: []
    inputs: Callable[[dict[str, Any]], list[str]] = lambda spec: [str(spec["manifest"])]
    summary: str = field(default="", compare=False)


def require(table: pd.DataFrame, columns: list[str], source: str, preset: str) -> None:
    """Stop with the file and the columns it has when a layout's column is absent."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ManifestError(
            f"{source}: column(s) {missing} missing for preset {preset!r}; "
            f"columns are {list(table.columns)}"
        )


def carry_user_columns(
    table: pd.DataFrame, raw: pd.DataFrame, spec: dict[str, Any], source: str, strict=True
) -> list[str]:
    """Copy the file's columns the dataset names in `keep_columns` (a site, a scanner) and
    `label_columns` (labels of the user's own) into a preset's table, which holds only the
    layout's own columns (`raw` row for row); returns the label columns, added to the preset's
    findings. A name the file does not have stops here, listing the file's own columns
    (`strict`; else it is left to the files the preset joins next)."""
    keep = list(spec.get("keep_columns") or [])
    labels = list(spec.get("label_columns") or [])
    if not strict:
        keep, labels = ([c for c in names if c in raw.columns] for names in (keep, labels))
    for key, names in (("keep_columns", keep), ("label_columns", labels)):
        absent = [c for c in names if c not in raw.columns and c not in table.columns]
        if absent:
            raise ManifestError(
                f"{source}: column(s) {absent} (dataset.{key}) not found; the file's columns "
                f"are {list(raw.columns)}"
            )
    for column in dict.fromkeys([*keep, *labels]):
        if column not in table.columns:
            table[column] = raw[column].to_numpy()
    return labels
