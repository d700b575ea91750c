"""Dataset presets: turn a dataset's own files, in their public layout, into one raw table that
`ingest_manifest` normalises. Each reader returns (table, column map, label columns, source name).

- `mimic-cxr-jpg`: `mimic-cxr-2.0.0-metadata.csv(.gz)` (one row per image), the per-study
  `-chexpert` or `-negbio` labels joined on (subject_id, study_id), the official `-split` joined on
  dicom_id; images at `files/p<subject[:2]>/p<subject>/s<study>/<dicom_id>.jpg`.
- `chexpert`: `train.csv` / `valid.csv`; patient and study come from `Path`
  (`CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`), paths relative to the folder
  holding `CheXpert-v1.0*`.
- `nih-cxr14`: `Data_Entry_2017*.csv`; `Finding Labels` split on `|` into one column per finding;
  images found by file name anywhere under `image_root` (the release's `images_0NN/images/`).
- `emory`: a base table with one row per image, then `tables` keyed by image or patient id, each
  joined by a column map (Emory-CXR-style findings, demographics, social-determinant tables).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from cxratlas.ingest.manifest import (
    KNOWN_FINDINGS,
    ManifestError,
    apply_column_map,
    read_table,
    snake_case,
)

log = logging.getLogger(__name__)

Preset = tuple[pd.DataFrame, dict[str, str], "list[str] | None", str]


def _generic(spec: dict[str, Any]) -> Preset:
    path = spec["manifest"]
    return read_table(path), dict(spec.get("columns") or {}), spec.get("label_columns"), str(path)


def _require(table: pd.DataFrame, columns: list[str], source: str, preset: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ManifestError(
            f"{source}: column(s) {missing} missing for preset {preset!r}; "
            f"columns are {list(table.columns)}"
        )


MIMIC_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other",
    "Pneumonia", "Pneumothorax", "Support Devices",
)  # fmt: skip


def _mimic(spec: dict[str, Any]) -> Preset:
    source = str(spec["manifest"])
    meta = read_table(spec["manifest"])
    _require(meta, ["dicom_id", "subject_id", "study_id"], source, "mimic-cxr-jpg")
    sid, study = meta["subject_id"].astype(str), meta["study_id"].astype(str)
    table = pd.DataFrame(
        {
            "image_id": meta["dicom_id"].astype(str),
            "path": "files/p"
            + sid.str[:2]
            + "/p"
            + sid
            + "/s"
            + study
            + "/"
            + meta["dicom_id"]
            + ".jpg",
            "patient_id": sid,
            "study_id": study,
        }
    )
    if "ViewPosition" in meta:
        table["view_position"] = meta["ViewPosition"]
    if "StudyDate" in meta:
        table["study_date"] = meta["StudyDate"]
    labels = None
    if spec.get("labels"):
        lab = read_table(spec["labels"])
        _require(lab, ["subject_id", "study_id"], str(spec["labels"]), "mimic-cxr-jpg")
        dup = lab.duplicated(["subject_id", "study_id"])
        if dup.any():
            raise ManifestError(
                f"{spec['labels']}: row {int(dup.to_numpy().argmax()) + 2}: study "
                f"{lab.loc[dup, 'study_id'].iloc[0]} appears twice (labels are per study)"
            )
        labels = [c for c in lab.columns if c not in ("subject_id", "study_id")]
        lab = lab.rename(columns={"subject_id": "patient_id"}).astype({"patient_id": str})
        table = table.merge(lab.astype({"study_id": str}), on=["patient_id", "study_id"],
                            how="left", validate="many_to_one")  # fmt: skip
        for col in labels:  # studies without a label row: every finding missing
            table[col] = table[col].fillna("")
    if spec.get("split"):
        split = read_table(spec["split"])
        _require(split, ["dicom_id", "split"], str(spec["split"]), "mimic-cxr-jpg")
        table = table.merge(
            split[["dicom_id", "split"]].rename(columns={"dicom_id": "image_id"}),
            on="image_id", how="left", validate="one_to_one",
        )  # fmt: skip
        table["split"] = table["split"].fillna("")
    return table, {}, labels, source


CHEXPERT_PATH = re.compile(
    r"(?P<split>[^/]+)/(?P<patient>patient\d+)/(?P<study>study\d+)/(?P<view>[^/]+)\.\w+$"
)


def _chexpert(spec: dict[str, Any]) -> Preset:
    source = str(spec["manifest"])
    raw = read_table(spec["manifest"])
    _require(raw, ["Path"], source, "chexpert")
    parts = raw["Path"].astype(str).str.extract(CHEXPERT_PATH)
    bad = parts["patient"].isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ManifestError(
            f"{source}: row {row + 2}, column 'Path': {raw['Path'].iloc[row]!r} is not "
            "<split>/patientNNNNN/studyN/<view>.jpg"
        )
    table = pd.DataFrame(
        {
            "image_id": parts["split"]
            + "_"
            + parts["patient"]
            + "_"
            + parts["study"]
            + "_"
            + parts["view"],
            "path": raw["Path"].astype(str),
            "patient_id": parts["patient"],
            "study_id": parts["patient"] + "_" + parts["study"],
        }
    )
    if "AP/PA" in raw:
        view = raw["AP/PA"].astype("string")
        if "Frontal/Lateral" in raw:
            view = view.mask(raw["Frontal/Lateral"].astype("string").str.lower() == "lateral",
                             "LATERAL")  # fmt: skip
        table["view_position"] = view
    for src, dst in (("Sex", "sex"), ("Age", "age")):
        if src in raw:
            table[dst] = raw[src]
    labels = [c for c in raw.columns if snake_case(c) in KNOWN_FINDINGS and c not in ("Sex", "Age")]
    for col in labels:
        table[col] = raw[col]
    return table, {}, labels, source


NIH_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis",
    "Hernia", "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax",
    "No Finding",
)  # fmt: skip


def _file_index(root: str | os.PathLike) -> dict[str, str]:
    """File name -> path relative to root, for releases split over several folders."""
    index: dict[str, str] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            index.setdefault(name, os.path.relpath(os.path.join(folder, name), root))
    return index


def _nih(spec: dict[str, Any]) -> Preset:
    source = str(spec["manifest"])
    # the 2017 file ends data rows with a comma: without index_col=False pandas would shift columns
    raw = pd.read_csv(spec["manifest"], dtype=str, keep_default_na=False, index_col=False)
    _require(raw, ["Image Index", "Finding Labels"], source, "nih-cxr14")
    names = raw["Image Index"].astype(str)
    root = spec.get("image_root")
    index = _file_index(root) if root and os.path.isdir(root) else {}
    table = pd.DataFrame(
        {
            "image_id": names.str.replace(r"\.png$", "", regex=True),
            "path": [index.get(n, f"images/{n}") for n in names],
        }
    )
    for src, dst in (("Patient ID", "patient_id"), ("View Position", "view_position"),
                     ("Patient Gender", "sex"), ("Patient Age", "age")):  # fmt: skip
        if src in raw:
            table[dst] = raw[src]
    if "Patient ID" in raw and "Follow-up #" in raw:
        table["study_id"] = raw["Patient ID"] + "_" + raw["Follow-up #"]
    findings = raw["Finding Labels"].astype(str).str.split("|")
    known = {f.lower(): f for f in NIH_FINDINGS}
    unknown = sorted({f for fs in findings for f in fs if f.strip().lower() not in known})
    if unknown:
        raise ManifestError(
            f"{source}: column 'Finding Labels' holds unknown finding(s) {unknown[:5]}; "
            f"known: {list(NIH_FINDINGS)}"
        )
    sets = findings.map(lambda fs: {f.strip().lower() for f in fs})
    for f in NIH_FINDINGS:
        table[f] = sets.map(lambda s, f=f: "1" if f.lower() in s else "0")
    return table, {}, list(NIH_FINDINGS), source


def _emory(spec: dict[str, Any]) -> Preset:
    """The base table renamed by `columns`, then each of `tables` left-joined on its key."""
    source = str(spec["manifest"])
    # renamed first: the tables join on canonical keys (image_id, patient_id)
    table = apply_column_map(read_table(spec["manifest"]), spec.get("columns"), source)
    labels = list(spec.get("label_columns") or [])
    for i, t in enumerate(spec.get("tables") or []):
        table = _join_table(table, t, f"dataset.tables[{i}]")
        if t.get("labels"):
            labels += [c for c in _table_columns(t).values() if c not in labels]
    return table, {}, labels or None, source


def _table_columns(t: dict[str, Any]) -> dict[str, str]:
    """A table's `columns` as original -> name in the manifest."""
    cols = t.get("columns")
    if cols is None:
        return {}
    if isinstance(cols, list):
        return {c: c for c in cols}
    return {original: name for name, original in cols.items()}


def _join_table(table: pd.DataFrame, t: dict[str, Any], where: str) -> pd.DataFrame:
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
    cols = _table_columns(t) or {c: c for c in other.columns if c != on}
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
    other = other[[on, *cols]].rename(columns={on: key, **cols})
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


READERS: dict[str, Callable[[dict[str, Any]], Preset]] = {
    "demo": _generic,
    "generic": _generic,
    "mimic-cxr-jpg": _mimic,
    "chexpert": _chexpert,
    "nih-cxr14": _nih,
    "emory": _emory,
}


def kept_columns(spec: dict[str, Any]) -> list[str]:
    """Columns a dataset carries beyond the canonical ones: its keep_columns, plus what its
    preset adds (MIMIC's official split)."""
    extra = ["split"] if spec["preset"] == "mimic-cxr-jpg" and spec.get("split") else []
    return list(dict.fromkeys([*(spec.get("keep_columns") or []), *extra]))


def preset_inputs(spec: dict[str, Any]) -> list[str]:
    """Every file the preset reads, so a change to any of them reruns ingest."""
    files = [spec["manifest"]]
    for key in ("labels", "split"):
        if spec.get(key):
            files.append(spec[key])
    files += [t["path"] for t in spec.get("tables") or []]
    return [str(f) for f in files]


def read_preset(spec: dict[str, Any]) -> Preset:
    try:
        reader = READERS[spec["preset"]]
    except KeyError:
        raise ValueError(
            f"dataset {spec.get('name')!r}: unknown preset {spec['preset']!r}; "
            f"known: {sorted(READERS)}"
        ) from None
    table, columns, labels, source = reader(spec)
    if spec.get("id_prefix"):
        id_col = columns.get("image_id", "image_id")
        if id_col in table:
            table = table.assign(**{id_col: spec["id_prefix"] + table[id_col].astype(str)})
    return table, columns, labels, source
