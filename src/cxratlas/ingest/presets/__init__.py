"""Dataset presets, one module each; this registry is the only list of them.

Each preset reads a dataset's own files in their public layout (MIMIC-CXR-JPG, CheXpert,
NIH ChestX-ray14, Emory-style joined tables, or any table with a column map) into one raw table
that `ingest_manifest` normalises.
"""

from __future__ import annotations

from typing import Any

from cxratlas.ingest.presets.base import Preset, RawTable
from cxratlas.ingest.presets.chexpert import CHEXPERT
from cxratlas.ingest.presets.emory import EMORY
from cxratlas.ingest.presets.generic import DEMO, GENERIC
from cxratlas.ingest.presets.mimic import MIMIC
from cxratlas.ingest.presets.nih import NIH

PRESETS: dict[str, Preset] = {p.name: p for p in (DEMO, GENERIC, MIMIC, CHEXPERT, NIH, EMORY)}

__all__ = ["PRESETS", "Preset", "RawTable", "kept_columns", "preset_inputs", "read_preset"]


def preset(spec: dict[str, Any]) -> Preset:
    try:
        return PRESETS[spec["preset"]]
    except KeyError:
        raise ValueError(
            f"dataset {spec.get('name')!r}: unknown preset {spec['preset']!r}; "
            f"known: {sorted(PRESETS)}"
        ) from None


def kept_columns(spec: dict[str, Any]) -> list[str]:
    """Columns a dataset carries beyond the canonical ones: its keep_columns, plus what its
    preset adds (MIMIC's official split)."""
    extra = preset(spec).extra_columns(spec)
    return list(dict.fromkeys([*(spec.get("keep_columns") or []), *extra]))


def preset_inputs(spec: dict[str, Any]) -> list[str]:
    """Every file the preset reads, so a change to any of them reruns ingest."""
    return preset(spec).inputs(spec)


def read_preset(spec: dict[str, Any]) -> RawTable:
    table, columns, labels, source = preset(spec).read(spec)
    if spec.get("id_prefix"):
        id_col = columns.get("image_id", "image_id")
        if id_col in table:
            table = table.assign(**{id_col: spec["id_prefix"] + table[id_col].astype(str)})
    return RawTable(table, columns, labels, source)
