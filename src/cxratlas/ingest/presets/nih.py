"""`nih-cxr14`: NIH ChestX-ray14's `Data_Entry_2017*.csv`.

`Finding Labels` is split on `|` into one column per finding; images are found by file name
anywhere under `image_root` (the release's `images_0NN/images/`). Image ids are `Image Index`
without `.png`. The dataset's `keep_columns` and `label_columns` carry further columns of the
file (a site; labels of your own) beside the release's.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.ingest.manifest import ManifestError
from cxratlas.ingest.presets.base import Preset, RawTable, carry_user_columns, require

FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis",
    "Hernia", "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax",
    "No Finding",
)  # fmt: skip
COLUMNS = (
    ("Patient ID", "patient_id"), ("View Position", "view_position"),
    ("Patient Gender", "sex"), ("Patient Age", "age"),
)  # fmt: skip


def read(spec: dict[str, Any]) -> RawTable:
    source = str(spec["manifest"])
    # the 2017 file ends data rows with a comma: without index_col=False pandas would shift columns
    raw = pd.read_csv(spec["manifest"], dtype=str, keep_default_na=False, index_col=False)
    require(raw, ["Image Index", "Finding Labels"], source, "nih-cxr14")
    names = raw["Image Index"].astype(str)
    root = spec.get("image_root")
    index = file_index(root) if root and os.path.isdir(root) else {}
    table = pd.DataFrame(
        {
            "image_id": names.str.replace(r"\.png$", "", regex=True),
            "path": [index.get(n, f"images/{n}") for n in names],
        }
    )
    for src, dst in COLUMNS:
        if src in raw:
            table[dst] = raw[src]
    if "Patient ID" in raw and "Follow-up #" in raw:
        table["study_id"] = raw["Patient ID"] + "_" + raw["Follow-up #"]
    table = pd.concat([table, _finding_columns(raw["Finding Labels"].astype(str), source)], axis=1)
    own = carry_user_columns(table, raw, spec, source)
    return RawTable(table, {}, [*FINDINGS, *own], source)


def _finding_columns(labels: pd.Series, source: str) -> pd.DataFrame:
    findings = labels.str.split("|")
    known = {f.lower() for f in FINDINGS}
    bad = findings.map(lambda fs: [f for f in fs if f.strip().lower() not in known])
    rows = np.flatnonzero(bad.str.len().to_numpy() > 0)
    if len(rows):
        values = sorted({f.strip() or "(blank)" for fs in bad.iloc[rows] for f in fs})
        lines = ", ".join(str(r + 2) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        raise ManifestError(
            f"{source}: column 'Finding Labels' holds {values[:5]} in {len(rows)} row(s) "
            f"(line(s) {lines}); the release writes one or more of {list(FINDINGS)} joined by "
            "'|', and 'No Finding' for an image with none of them. Labels of your own go in "
            "columns of their own, named in the dataset's label_columns"
        )
    sets = findings.map(lambda fs: {f.strip().lower() for f in fs})
    return pd.DataFrame(
        {f: sets.map(lambda s, f=f: "1" if f.lower() in s else "0") for f in FINDINGS}
    )


def file_index(root: str | os.PathLike) -> dict[str, str]:
    """File name -> path relative to root, for releases split over several folders."""
    index: dict[str, str] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            index.setdefault(name, os.path.relpath(os.path.join(folder, name), root))
    return index


NIH = Preset("nih-cxr14", read, summary="NIH ChestX-ray14 Data_Entry_2017.csv")
