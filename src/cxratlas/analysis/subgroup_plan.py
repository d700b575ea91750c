"""The plan-time check of the `subgroups` entries (rules/common.smk): every entry against the
sample the plan drew, before any job. Apart from `subgroup_members`, which the subgroup jobs
import, since this reads the datasets as the plan does (`ingest`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from cxratlas.analysis.subgroup_members import (
    UNREAD,
    SubgroupSpec,
    check_members,
    members,
    subgroup_specs,
)

log = logging.getLogger(__name__)
CACHE = Path(".snakemake/cxratlas/subgroups")  # the plan's manifest rows for queries
CACHE_KEPT = 4


def check_subgroups(
    specs: list[SubgroupSpec],
    sample: pd.Index,
    rows: Callable[[], pd.DataFrame],
    say: Callable[[str], None] = log.warning,
) -> dict[str, int]:
    """Check every entry against the sample's ids; `rows()` gives the sample's manifest rows
    (indexed by image_id), asked only when a query needs them. Returns each subgroup's size."""
    sizes = {}
    frame = None
    for spec in specs:
        if spec.query and frame is None:
            frame = rows()
        ids = members(spec, frame if spec.query else None)
        unread = frame.attrs.get(UNREAD, []) if spec.query else []
        if ids.empty and unread:  # the ingest job reads those values: the job decides
            say(f"{spec.key}: {spec.source} selects no image yet; the columns {unread} are "
                "read from DICOM headers by the ingest job, which decides")  # fmt: skip
        else:
            ids = check_members(spec, ids, sample, say)
        sizes[spec.name] = len(ids)
    return sizes


def check_planned_subgroups(
    config: dict[str, Any], plan, specs: list[dict[str, Any]], say: Callable[[str], None]
) -> None:
    """The plan-time check (rules/common.smk): every `subgroups` entry against the sample the
    plan drew. Query subgroups read the sample's manifest rows once per plan (cached)."""
    from cxratlas.ingest.plan import proposed_ledger

    subgroups = subgroup_specs(config.get("subgroups"))
    if not subgroups:
        return
    ledger = proposed_ledger(plan)
    sample = pd.Index(ledger["image_id"])
    sizes = check_subgroups(subgroups, sample, lambda: _planned_rows(config, plan, specs, sample))
    say("subgroups: " + ", ".join(f"{name} {n} image(s)" for name, n in sizes.items()))


def _planned_rows(config, plan, specs, sample: pd.Index) -> pd.DataFrame:
    """The sample's rows of the manifest, as the plan reads the datasets (DICOM header fields
    are read by the ingest job: a query on them is checked by the job, not here)."""
    from cxratlas.ingest.datasets import quick_manifest
    from cxratlas.io import write_frame

    path = CACHE / f"{plan.key[:24]}.parquet"
    if path.exists():
        return _with_dicom_columns(pd.read_parquet(path).set_index("image_id"), specs)
    manifest, _ = quick_manifest(specs, config["privacy"], sampled=frozenset(sample))
    rows = manifest[manifest["image_id"].isin(sample)].drop(columns=["path", "rel_path"])
    write_frame(rows, path)
    for old in sorted(CACHE.glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)[:-CACHE_KEPT]:
        old.unlink(missing_ok=True)
    return _with_dicom_columns(rows.set_index("image_id"), specs)


def _with_dicom_columns(rows: pd.DataFrame, specs) -> pd.DataFrame:
    """Where a dataset reads DICOM headers, the columns they fill exist (unknown at plan time),
    so a query naming them is not refused as naming an unknown column."""
    if not any(spec.get("dicom_tags") for spec in specs):
        return rows
    from cxratlas.ingest.dicom import TAGS

    names = {"study_date": "study_year"}
    unread = [names.get(c, c) for c in TAGS.values()]
    rows = rows.assign(**{c: pd.Series(pd.NA, index=rows.index, dtype="string")
                          for c in unread if c not in rows})  # fmt: skip
    rows.attrs[UNREAD] = unread
    return rows
