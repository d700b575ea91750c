"""`chexpert`: CheXpert's `train.csv` / `valid.csv`.

Patient and study come from `Path` (`CheXpert-v1.0-small/train/patient00001/study1/
view1_frontal.jpg`); paths are relative to the folder holding `CheXpert-v1.0*`.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from cxratlas.ingest.manifest import KNOWN_FINDINGS, ManifestError, read_table, snake_case
from cxratlas.ingest.presets.base import Preset, RawTable, carry_user_columns, require

PATH = re.compile(
    r"(?P<split>[^/]+)/(?P<patient>patient\d+)/(?P<study>study\d+)/(?P<view>[^/]+)\.\w+$"
)


def read(spec: dict[str, Any]) -> RawTable:
    source = str(spec["manifest"])
    raw = read_table(spec["manifest"])
    require(raw, ["Path"], source, "chexpert")
    parts = _path_parts(raw["Path"].astype(str), source)
    table = pd.DataFrame(
        {
            "image_id": parts["split"] + "_" + parts["patient"] + "_" + parts["study"] + "_"
            + parts["view"],
            "path": raw["Path"].astype(str),
            "patient_id": parts["patient"],
            "study_id": parts["patient"] + "_" + parts["study"],
        }
    )  # fmt: skip
    if "AP/PA" in raw:
        table["view_position"] = _view(raw)
    for src, dst in (("Sex", "sex"), ("Age", "age")):
        if src in raw:
            table[dst] = raw[src]
    labels = [c for c in raw.columns if snake_case(c) in KNOWN_FINDINGS and c not in ("Sex", "Age")]
    for col in labels:
        table[col] = raw[col]
    own = carry_user_columns(table, raw, spec, source)
    return RawTable(table, {}, list(dict.fromkeys([*labels, *own])), source)


def _path_parts(paths: pd.Series, source: str) -> pd.DataFrame:
    parts = paths.str.extract(PATH)
    bad = parts["patient"].isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ManifestError(
            f"{source}: row {row + 2}, column 'Path': {paths.iloc[row]!r} is not "
            "<split>/patientNNNNN/studyN/<view>.jpg"
        )
    return parts


def _view(raw: pd.DataFrame) -> pd.Series:
    """AP/PA, with lateral images (empty AP/PA in the release) called LATERAL."""
    view = raw["AP/PA"].astype("string")
    if "Frontal/Lateral" in raw:
        lateral = raw["Frontal/Lateral"].astype("string").str.lower() == "lateral"
        view = view.mask(lateral, "LATERAL")
    return view


CHEXPERT = Preset("chexpert", read, summary="CheXpert train.csv / valid.csv")
