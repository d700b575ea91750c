"""Ingest: read a manifest (CSV or Parquet), validate it, normalise labels, check image files.

The output, `results/manifest.parquet`, has canonical column names: `image_id`, `path` (absolute or
relative to the working directory), the optional metadata columns, and one int8 column per finding
(1 positive, 0 negative, -1 uncertain, null missing).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cxratlas.io import ManifestColumns

log = logging.getLogger(__name__)

REQUIRED = ("image_id", "path")
OPTIONAL = ("patient_id", "study_id", "view_position", "manufacturer", "sex", "age", "study_date")
# Finding names of CheXpert / MIMIC-CXR (chexpert and negbio labelers) and NIH ChestX-ray14,
# in snake_case. A column whose normalised name is here is read as a label.
KNOWN_FINDINGS = frozenset(
    {
        "no_finding",
        "enlarged_cardiomediastinum",
        "cardiomegaly",
        "lung_opacity",
        "lung_lesion",
        "edema",
        "consolidation",
        "pneumonia",
        "atelectasis",
        "pneumothorax",
        "pleural_effusion",
        "effusion",
        "pleural_other",
        "fracture",
        "support_devices",
        "infiltration",
        "mass",
        "nodule",
        "emphysema",
        "fibrosis",
        "pleural_thickening",
        "hernia",
        "covid19",
        "tuberculosis",
        "normal",
    }
)
_POSITIVE = {"1", "1.0", "positive", "pos", "yes", "y", "true", "t"}
_NEGATIVE = {"0", "0.0", "negative", "neg", "no", "n", "false", "f"}
_UNCERTAIN = {"-1", "-1.0", "uncertain", "u"}
_MISSING = {"", "nan", "none", "null", "na", "n/a", "not_mentioned", "not mentioned", "missing"}
VIEW_ALIASES = {
    "PA": "PA",
    "AP": "AP",
    "LATERAL": "LATERAL",
    "LL": "LATERAL",
    "RL": "LATERAL",
    "L": "LATERAL",
    "LAT": "LATERAL",
    "AP SUPINE": "AP",
    "AP ERECT": "AP",
    "AP AXIAL": "AP",
    "PA LLD": "PA",
    "AP LLD": "AP",
    "AP RLD": "AP",
    "PA RLD": "PA",
}


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, row and column."""


def snake_case(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


TABLE_FORMATS = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".parquet", ".pq")
SPREADSHEETS = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet manifest with every column as it is written (strings for CSV).

    Every way a file can be unusable is named here, before any job: missing, a directory, a
    spreadsheet, another format, 0 bytes, a header without rows."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found")
    if path.is_dir():
        raise ManifestError(f"{path}: is a directory, not a manifest file")
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith(SPREADSHEETS):
        raise ManifestError(
            f"{path}: spreadsheet files are not read (their cells change type as they are "
            "edited); save the sheet as CSV (UTF-8) or Parquet and point `manifest` at that"
        )
    if not suffixes.endswith(TABLE_FORMATS):
        raise ManifestError(
            f"{path}: unsupported manifest format {path.suffix!r} (use .csv, .tsv or .parquet)"
        )
    if path.stat().st_size == 0:
        raise ManifestError(f"{path}: the file is empty (0 bytes)")
    if suffixes.endswith((".parquet", ".pq")):
        table = pd.read_parquet(path)
    else:
        sep = "\t" if ".tsv" in suffixes else ","
        try:
            table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise ManifestError(f"{path}: no header and no rows (only blank lines)") from None
    if table.empty:
        raise ManifestError(
            f"{path}: has a header ({', '.join(map(str, table.columns[:8]))}) but no rows"
        )
    return table


def apply_column_map(table: pd.DataFrame, columns: dict[str, str] | None, source: str):
    """Rename `table`'s columns by `dataset.columns` (canonical name -> column in the file)."""
    for canonical, original in (columns or {}).items():
        if original not in table.columns:
            raise ManifestError(
                f"{source}: column {original!r} (mapped to {canonical!r} in dataset.columns) "
                f"not found; columns are {list(table.columns)}"
            )
    return table.rename(columns={v: k for k, v in (columns or {}).items()})


def renamed_hint(names: list[str], columns: dict[str, str] | None) -> str:
    """For names the user wrote that are a column's original name, renamed by `dataset.columns`
    (canonical name -> original): the name to write instead, as a clause of an error."""
    renamed = {original: canonical for canonical, original in (columns or {}).items()}
    return "".join(
        f"; {n!r} is renamed to {renamed[n]!r} by dataset.columns: write {renamed[n]!r}"
        for n in names
        if n in renamed
    )


def require_columns(df: pd.DataFrame, names: list[str], key: str, source: str, columns) -> None:
    """Stop, naming the key, when a column it names is not in the renamed table."""
    absent = [c for c in names if c not in df.columns]
    if absent:
        noun = "label column(s)" if key.endswith("label_columns") else "column(s)"
        raise ManifestError(
            f"{source}: {noun} {absent} ({key}) not found; columns are {list(df.columns)}"
            + renamed_hint(absent, columns)
        )


def normalise_label(values: pd.Series, column: str, source: str, row_offset: int = 2) -> pd.Series:
    """Map label values by name to 1/0/-1/<NA> (Int8); an unknown value raises naming its row."""
    text = values.astype("string").str.strip().str.lower().fillna("")
    out = pd.Series(pd.NA, index=values.index, dtype="Int8")
    out[text.isin(_POSITIVE)] = 1
    out[text.isin(_NEGATIVE)] = 0
    out[text.isin(_UNCERTAIN)] = -1
    bad = ~(
        text.isin(_POSITIVE) | text.isin(_NEGATIVE) | text.isin(_UNCERTAIN) | text.isin(_MISSING)
    )
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise ManifestError(
            f"{source}: row {pos + row_offset}, column {column!r}: label value "
            f"{values.iloc[pos]!r} is not one of 1/0/-1/blank (or positive/negative/uncertain); "
            f"{int(bad.sum())} such value(s) in this column"
        )
    return out


def normalise_view(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().str.upper()
    return text.map(lambda v: VIEW_ALIASES.get(v, v) if isinstance(v, str) and v else pd.NA)


def ingest_manifest(
    manifest: str | os.PathLike | pd.DataFrame,
    image_root: str | os.PathLike | None = None,
    columns: dict[str, str] | None = None,
    label_columns: list[str] | None = None,
    on_missing_image: str = "drop",
    source: str | None = None,
    keep_columns: list[str] | None = None,
    dicom_tags: bool = False,
    sampled: frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate and normalise a manifest (a file, or a table a preset assembled).

    Returns (manifest, dropped): `dropped` lists each removed row with its reason.
    Header rows count as row 1, so error row numbers match a spreadsheet view of a CSV.
    `keep_columns` are further manifest columns carried as they are (strings), e.g. for colouring.
    `dicom_tags` fills view, manufacturer, sex, age, study date, photometric interpretation and
    modality from DICOM headers where the manifest leaves them empty. `sampled`: ids the shared
    sample already holds; their rows stay even if the file is missing now (a mount that is down
    is not a withdrawn row: their vectors stay, and their shard fails until the file is back).
    """
    if on_missing_image not in ("drop", "fail"):
        raise ValueError(f"on_missing_image must be 'drop' or 'fail', not {on_missing_image!r}")
    if isinstance(manifest, pd.DataFrame):
        raw, source = manifest, source or "manifest"
    else:
        raw, source = read_table(manifest), source or os.fspath(manifest)
    df = _checked_required(apply_column_map(raw, columns, source), raw, source)
    require_columns(df, keep_columns or [], "dataset.keep_columns", source, columns)
    require_columns(df, label_columns or [], "dataset.label_columns", source, columns)
    out = _canonical(df, image_root, keep_columns or [])
    if dicom_tags:
        _fill_from_dicom(out)
    out = _normalise_metadata(out)
    labels = _label_columns(df, label_columns)
    for original, name in labels.items():
        out[name] = normalise_label(df[original], original, source)
    exists = _check_image_files(out, source, on_missing_image)
    held = ~exists & out["image_id"].isin(sampled).to_numpy()
    if held.any():
        log.warning("%s: %d image file(s) of the shared sample not found (e.g. %s); kept in the "
                    "sample: their vectors stay, and their shards fail until the files are back",
                    source, int(held.sum()), out.loc[held, "path"].iloc[0])  # fmt: skip
        exists = exists | held
    dropped = out.loc[~exists, ["image_id", "path"]].assign(reason="image file not found")
    columns = ManifestColumns(
        findings=tuple(dict.fromkeys(labels.values())),
        attributes=tuple(dict.fromkeys(snake_case(c) for c in keep_columns or [])),
    )
    kept = columns.tag(out.loc[exists].reset_index(drop=True))
    return kept, dropped.reset_index(drop=True)


def _checked_required(df: pd.DataFrame, raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """The renamed table, once image_id and path are present, filled and ids unique."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{source}: required column(s) {missing} missing; columns are {list(raw.columns)}. "
            "Map yours with dataset.columns, e.g. {image_id: dicom_id, path: Path}"
        )
    df = df.reset_index(drop=True)
    df["image_id"] = df["image_id"].astype("string").str.strip()
    df["path"] = df["path"].astype("string").str.strip()
    for col in REQUIRED:
        empty = df[col].isna() | (df[col] == "")
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0]) + 2
            raise ManifestError(f"{source}: row {row}, column {col!r}: empty value")
    dup = df["image_id"].duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())[:5] + 2
        first = df.loc[dup, "image_id"].iloc[0]
        raise ManifestError(
            f"{source}: column 'image_id': duplicate id {first!r} "
            f"({int(dup.sum())} rows share ids; first rows {rows.tolist()})"
        )
    if df.empty:
        raise ManifestError(f"{source}: no rows")
    return df


def _canonical(df: pd.DataFrame, image_root, keep_columns: list[str]) -> pd.DataFrame:
    """Id, resolved path, the path as written, the known optional columns and the kept ones."""
    out = pd.DataFrame({"image_id": df["image_id"].astype(str)})
    root = Path(image_root) if image_root else None
    paths = df["path"].astype(str)
    out["path"] = [str(root / p) if root and not os.path.isabs(p) else p for p in paths]
    out["rel_path"] = paths.to_numpy()  # as the manifest wrote it: locates precomputed files
    for col in OPTIONAL:
        if col in df.columns:
            out[col] = df[col]
    for col in keep_columns:  # present: ingest_manifest checked them
        out[snake_case(col)] = df[col].astype("string").replace("", pd.NA)
    return out


def _normalise_metadata(out: pd.DataFrame) -> pd.DataFrame:
    """View aliases to AP/PA/LATERAL..., age as a number, study date to its year, text ids."""
    if "view_position" in out:
        out["view_position"] = normalise_view(out["view_position"])
    if "age" in out:
        out["age"] = pd.to_numeric(out["age"], errors="coerce").astype("Float32")
    if "study_date" in out:
        # ISO dates, DICOM DA / MIMIC YYYYMMDD, and the same read back as a float (20180506.0)
        text = out["study_date"].astype("string").str.replace(r"\.0$", "", regex=True)
        dates = pd.to_datetime(text, errors="coerce", format="mixed")
        out["study_year"] = dates.dt.year.astype("Int16")
        out = out.drop(columns="study_date")
    for col in ("patient_id", "study_id", "manufacturer", "sex"):
        if col in out:
            out[col] = out[col].astype("string").replace("", pd.NA)
    return out


def _stat_kinds(paths: list[str]) -> np.ndarray:
    """Per path: 1 a file, 0 absent, -1 a directory; threaded, since on a cluster file system
    each stat is a round trip."""
    from concurrent.futures import ThreadPoolExecutor

    def kind(p: str) -> int:
        return 1 if os.path.isfile(p) else (-1 if os.path.isdir(p) else 0)

    if len(paths) < 2000:
        return np.fromiter((kind(p) for p in paths), np.int8, len(paths))
    with ThreadPoolExecutor(16) as pool:
        return np.fromiter(pool.map(kind, paths, chunksize=512), np.int8, len(paths))


def _check_image_files(out: pd.DataFrame, source: str, on_missing_image: str) -> np.ndarray:
    """A mask of rows whose image file exists. A directory as a path, or no image found at
    all, is a manifest mistake and stops the run; a few missing files are dropped (or fail)."""
    kinds = _stat_kinds(out["path"].tolist())
    if (kinds == -1).any():
        first = int(np.flatnonzero(kinds == -1)[0])
        raise ManifestError(
            f"{source}: row {first + 2}, column 'path': {out.at[first, 'path']!r} is a "
            f"directory, not an image file ({int((kinds == -1).sum())} such row(s))"
        )
    exists = kinds == 1
    if not exists.any():
        raise ManifestError(
            f"{source}: none of the {len(out)} image files exists, e.g. row 2: "
            f"{out.at[0, 'path']!r}; check dataset.image_root and the path column"
        )
    if not exists.all():
        first = int(np.flatnonzero(~exists)[0])
        msg = (
            f"{source}: {int((~exists).sum())} image file(s) not found, first at row "
            f"{first + 2} (column 'path'): {out.at[first, 'path']}"
        )
        if on_missing_image == "fail":
            raise ManifestError(msg + " (set dataset.on_missing_image: drop to skip them)")
        log.warning("%s; dropped and recorded", msg)
    return exists


def _label_columns(df: pd.DataFrame, requested: list[str] | None) -> dict[str, str]:
    """Map manifest column -> canonical snake_case label name."""
    if requested is not None:  # present: ingest_manifest checked them
        return {c: snake_case(c) for c in requested}
    return {
        c: snake_case(c)
        for c in df.columns
        if snake_case(c) in KNOWN_FINDINGS and c not in REQUIRED + OPTIONAL
    }


def _fill_from_dicom(out: pd.DataFrame) -> None:
    """Header tags of the DICOM rows into empty manifest cells (headers only, pixels not read)."""
    from tqdm import tqdm

    from cxratlas.ingest.dicom import TAGS, DicomError, dicom_tags, is_dicom

    found: dict[str, list] = {c: [pd.NA] * len(out) for c in TAGS.values()}
    for i, path in enumerate(tqdm(out["path"], desc="DICOM headers", mininterval=10)):
        if not (os.path.isfile(path) and is_dicom(path)):
            continue
        try:
            tags = dicom_tags(path)
        except DicomError as exc:  # the image read records it; the manifest row stays
            log.warning("%s: DICOM header unreadable (%s)", path, exc)
            continue
        for column, value in tags.items():
            found[column][i] = value
    for column, values in found.items():
        series = pd.Series(values, index=out.index, dtype="object")
        if column in out:
            empty = out[column].isna() | (out[column].astype("string") == "")
            out[column] = out[column].astype("object").where(~empty, series)
        elif series.notna().any():
            out[column] = series
        if column in out and column != "age":
            out[column] = out[column].astype("string")
