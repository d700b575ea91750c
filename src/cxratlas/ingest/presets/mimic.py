"""`mimic-cxr-jpg`: MIMIC-CXR-JPG v2 in its PhysioNet layout.

`mimic-cxr-2.0.0-metadata.csv(.gz)` has one row per image; the per-study `-chexpert` or `-negbio`
labels join on (subject_id, study_id) and the official `-split` on dicom_id. Images lie at
`files/p<subject[:2]>/p<subject>/s<study>/<dicom_id>.jpg`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cxratlas.ingest.manifest import ManifestError, read_table
from cxratlas.ingest.presets.base import Preset, RawTable, carry_user_columns, require

NAME = "mimic-cxr-jpg"


def read(spec: dict[str, Any]) -> RawTable:
    source = str(spec["manifest"])
    meta = read_table(spec["manifest"])
    require(meta, ["dicom_id", "subject_id", "study_id"], source, NAME)
    table = _images(meta)
    # the metadata file's own columns, row for row before the joins (a name in the label or
    # split file is checked once those are joined)
    own = carry_user_columns(table, meta, spec, source, strict=False)
    labels = own or None
    if spec.get("labels"):
        table, labels = _join_labels(table, str(spec["labels"]))
        labels = list(dict.fromkeys([*labels, *own]))
    if spec.get("split"):
        table = _join_split(table, str(spec["split"]))
    absent = [c for c in spec.get("label_columns") or [] if c not in table.columns]
    if absent:
        raise ManifestError(
            f"{source}: label column(s) {absent} (dataset.label_columns) are in neither the "
            f"metadata nor the label file; their columns are {list(table.columns)}"
        )
    return RawTable(table, {}, labels, source)


def _images(meta: pd.DataFrame) -> pd.DataFrame:
    sid, study, dicom = (meta[c].astype(str) for c in ("subject_id", "study_id", "dicom_id"))
    table = pd.DataFrame(
        {
            "image_id": dicom,
            "path": "files/p" + sid.str[:2] + "/p" + sid + "/s" + study + "/" + dicom + ".jpg",
            "patient_id": sid,
            "study_id": study,
        }
    )
    for src, dst in (("ViewPosition", "view_position"), ("StudyDate", "study_date")):
        if src in meta:
            table[dst] = meta[src]
    return table


def _join_labels(table: pd.DataFrame, path: str) -> tuple[pd.DataFrame, list[str]]:
    lab = read_table(path)
    require(lab, ["subject_id", "study_id"], path, NAME)
    dup = lab.duplicated(["subject_id", "study_id"])
    if dup.any():
        raise ManifestError(
            f"{path}: row {int(dup.to_numpy().argmax()) + 2}: study "
            f"{lab.loc[dup, 'study_id'].iloc[0]} appears twice (labels are per study)"
        )
    labels = [c for c in lab.columns if c not in ("subject_id", "study_id")]
    lab = lab.rename(columns={"subject_id": "patient_id"}).astype(
        {"patient_id": str, "study_id": str}
    )
    table = table.merge(lab, on=["patient_id", "study_id"], how="left", validate="many_to_one")
    for col in labels:  # studies without a label row: every finding missing
        table[col] = table[col].fillna("")
    return table, labels


def _join_split(table: pd.DataFrame, path: str) -> pd.DataFrame:
    split = read_table(path)
    require(split, ["dicom_id", "split"], path, NAME)
    split = split[["dicom_id", "split"]].rename(columns={"dicom_id": "image_id"})
    table = table.merge(split, on="image_id", how="left", validate="one_to_one")
    table["split"] = table["split"].fillna("")
    return table


def _inputs(spec: dict[str, Any]) -> list[str]:
    return [str(spec[k]) for k in ("manifest", "labels", "split") if spec.get(k)]


MIMIC = Preset(
    NAME,
    read,
    extra_columns=lambda spec: ["split"] if spec.get("split") else [],
    inputs=_inputs,
    summary="MIMIC-CXR-JPG metadata + CheXpert/NegBio labels + official split",
)
