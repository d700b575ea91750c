"""The datasets of one run: the primary `dataset` plus any in `datasets`, read by preset, normalised
and stacked into one manifest with a `dataset` column (so one model can be compared across them).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pandas as pd

from cxratlas.ingest.manifest import ManifestError, ingest_manifest
from cxratlas.io import ManifestColumns

log = logging.getLogger(__name__)


def dataset_specs(config: dict[str, Any], demo_dir: str = "resources/demo") -> list[dict[str, Any]]:
    """Every dataset of the run, the primary first, each with a unique `name`; the demo's files are
    the ones the workflow generates."""
    specs = []
    for i, raw in enumerate([config["dataset"], *(config.get("datasets") or [])]):
        spec = dict(raw)
        where = "dataset" if i == 0 else f"datasets[{i - 1}]"
        spec["name"] = spec.get("name") or spec["preset"]
        if spec["preset"] == "demo":
            if i:
                raise ValueError(f"{where}: preset 'demo' is only for the primary dataset")
            spec["manifest"], spec["image_root"] = f"{demo_dir}/manifest.csv", demo_dir
        elif not spec.get("manifest"):
            raise ValueError(f"{where} ({spec['name']}): `manifest` is required for its preset")
        specs.append(spec)
    names = [s["name"] for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"dataset names must differ, {dup} repeats; set `name` on each dataset")
    return specs


def ingest_dataset(
    spec: dict[str, Any], sampled: frozenset[str] = frozenset()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One dataset as (manifest, dropped rows), both tagged with the dataset's name; rows of
    `sampled` ids stay though their file is missing (`ingest_manifest`)."""
    from cxratlas.ingest.presets import kept_columns, read_preset

    table, columns, label_columns, source = read_preset(spec)
    manifest, dropped = ingest_manifest(
        table,
        image_root=spec.get("image_root"),
        columns=columns,
        label_columns=label_columns,
        on_missing_image=spec.get("on_missing_image", "drop"),
        source=source,
        keep_columns=kept_columns(spec),
        dicom_tags=bool(spec.get("dicom_tags")),
        sampled=sampled,
    )
    columns = ManifestColumns.of(manifest)
    tagged = columns.tag(manifest.assign(dataset=spec["name"]))
    return tagged, dropped.assign(dataset=spec["name"])


def quick_manifest(
    specs: list[dict[str, Any]],
    privacy: dict[str, Any] | None = None,
    sampled: frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`ingest_datasets` as the plan reads the datasets: no DICOM header is opened (the ingest
    job reads those; the plan must stay quick), so the columns headers fill are not there."""
    quick = [{**copy.deepcopy(spec), "dicom_tags": False} for spec in specs]
    return ingest_datasets(quick, privacy, sampled)


def ingest_datasets(
    specs: list[dict[str, Any]],
    privacy: dict[str, Any] | None = None,
    sampled: frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every dataset stacked into one manifest; image ids must be unique across datasets.
    Patient and study ids leave as salted hashes unless `privacy.hash_ids` is false."""
    from cxratlas.ingest.privacy import check_identifier_columns, hash_ids

    privacy = {"hash_ids": True, "salt": "cxr-atlas", "identifiers": [], **(privacy or {})}
    check_identifier_columns(specs, privacy["identifiers"], privacy["hash_ids"])
    parts, dropped = zip(*(ingest_dataset(s, sampled) for s in specs), strict=True)
    for part, spec in zip(parts, specs, strict=True):
        log.info("dataset %s: %d usable images", spec["name"], len(part))
    manifest = pd.concat(parts, ignore_index=True)
    dup = manifest["image_id"].duplicated(keep=False)
    if dup.any():
        first = manifest.loc[dup, "image_id"].iloc[0]
        where = sorted(manifest.loc[manifest["image_id"] == first, "dataset"])
        raise ManifestError(
            f"image id {first!r} appears in datasets {where} ({int(dup.sum())} rows share ids "
            "across datasets); give one of them an `id_prefix`"
        )
    # concat widens a nullable column that one dataset lacks (Int8 labels to object): restore it
    for part in parts:
        for col, dtype in part.dtypes.items():
            if str(dtype) in ("Int8", "Int16", "Float32"):
                manifest[col] = manifest[col].astype(dtype)
    if privacy["hash_ids"]:
        manifest = hash_ids(manifest, privacy["salt"])
    each = [ManifestColumns.of(part) for part in parts]
    columns = ManifestColumns(
        findings=tuple(dict.fromkeys(f for c in each for f in c.findings)),
        attributes=tuple(dict.fromkeys(a for c in each for a in c.attributes)),
    )
    return columns.tag(manifest), pd.concat(dropped, ignore_index=True)
