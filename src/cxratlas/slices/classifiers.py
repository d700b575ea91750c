"""Classifiers in: the user's predictions (or the probes' out-of-fold scores), checked before any
job and normalised to one long table per classifier.

A `classifiers` entry names a predictions file (CSV, TSV or Parquet: an id column and one score
column per finding). Without a `classifiers` section, each model's linear probe is a classifier
named `probe_<model>` (its out-of-fold scores, `results/analysis/probes/scores.parquet`), so a
run shows error slices out of the box.

Every classifier becomes `results/classifiers/<name>.parquet` (`io.CLASSIFIER_COLUMNS`:
classifier, finding, image_id, label, score): one row per finding and sampled image whose label
is 1 or 0 in the manifest (-1 and blank labels as `analysis.probes.uncertain` and `.missing`
say).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.analysis.probes import KNOWN_ONLY, LabelPolicy

PROBE_PREFIX = "probe_"
PROBE_SCORES = "results/analysis/probes/scores.parquet"
CHECKED_DIR = ".snakemake/cxratlas/classifiers"  # stamps of predictions files already checked
log = logging.getLogger(__name__)
EXAMPLES = 3  # ids named in an error message


class ClassifierError(ValueError):
    """A classifier entry or predictions file that cannot be used; names the key, file and row."""


@dataclass(frozen=True)
class ClassifierSpec:
    """One classifier: the user's predictions file, or a model's probe (`probe` names the
    model). `findings`: finding -> its score column; `threshold`: None (the Youden point on all
    images), one number, or one per finding."""

    name: str
    predictions: str | None = None
    id_column: str = "image_id"
    findings: dict[str, str] = field(default_factory=dict)
    threshold: float | dict[str, float] | None = None
    probe: str | None = None
    unscored: str = "stop"  # sampled images without a row: stop the plan, or skip them

    @property
    def key(self) -> str:
        return f"classifiers.{self.name}"

    def threshold_of(self, finding: str) -> float | None:
        if isinstance(self.threshold, dict):
            return self.threshold.get(finding)
        return self.threshold


def classifier_specs(config: dict[str, Any]) -> dict[str, ClassifierSpec]:
    """The run's classifiers: the `classifiers` section, or one probe per model."""
    entries = config.get("classifiers") or {}  # the schema's defaults filled in
    if not entries:
        return {f"{PROBE_PREFIX}{m}": ClassifierSpec(f"{PROBE_PREFIX}{m}", probe=m)
                for m in config["models"]}  # fmt: skip
    return {
        name: ClassifierSpec(
            name, str(e["predictions"]), e["id_column"], dict(e["findings"]), e["threshold"],
            unscored=e.get("unscored", "stop"),
        )
        for name, e in entries.items()
    }  # fmt: skip


TABLE_SUFFIXES = {".csv": ",", ".csv.gz": ",", ".tsv": "\t", ".tsv.gz": "\t", ".txt": "\t",
                  ".parquet": None, ".pq": None}  # fmt: skip


def _where(path: str, row: int) -> str:
    """A data row (0-based) as the user finds it: a line of a text file, a row of a Parquet."""
    return f"row {row + 1}" if _suffix(path) in (".parquet", ".pq") else f"line {row + 2}"


def _suffix(path: str) -> str:
    name = Path(path).name.lower()
    return next((s for s in TABLE_SUFFIXES if name.endswith(s)), Path(path).suffix.lower())


def read_predictions(spec: ClassifierSpec) -> pd.DataFrame:
    """The predictions file as (id as string, one float column per finding, named by the
    finding), in file order; every way it cannot be used raises naming the key, file and row."""
    path = spec.predictions
    key = f"{spec.key}.predictions"
    if not Path(path).is_file():
        raise ClassifierError(f"{key}: {path}: file not found")
    if _suffix(path) not in TABLE_SUFFIXES:
        raise ClassifierError(f"{key}: {path}: use CSV, TSV or Parquet, not {_suffix(path)!r} "
                              "(save a spreadsheet as CSV)")  # fmt: skip
    sep = TABLE_SUFFIXES[_suffix(path)]
    try:
        raw = (pd.read_parquet(path) if sep is None
               else pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False))  # fmt: skip
    except (pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise ClassifierError(f"{key}: {path}: cannot be read ({exc})") from None
    if spec.id_column not in raw.columns:
        raise ClassifierError(f"{spec.key}.id_column: {spec.id_column!r} is not a column of "
                              f"{path} (columns: {list(raw.columns)})")  # fmt: skip
    absent = {f: c for f, c in spec.findings.items() if c not in raw.columns}
    if absent:
        finding, column = next(iter(absent.items()))
        raise ClassifierError(f"{spec.key}.findings.{finding}: column {column!r} is not in {path} "
                              f"(columns: {list(raw.columns)})")  # fmt: skip
    ids = raw[spec.id_column].astype("string").str.strip()
    _check_ids(ids, path, spec)
    out = pd.DataFrame({"image_id": ids.astype(str)})
    for finding, column in spec.findings.items():
        out[finding] = _numeric(raw[column], path, f"{spec.key}.findings.{finding}", column)
    return out


def _check_ids(ids: pd.Series, path: str, spec: ClassifierSpec) -> None:
    empty = ids.isna() | (ids == "")
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise ClassifierError(f"{path}, {_where(path, row)}: empty id in column "
                              f"{spec.id_column!r} ({spec.key})")  # fmt: skip
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        first = ids[dup].iloc[0]
        rows = [_where(path, int(i)) for i in np.flatnonzero((ids == first).to_numpy())]
        raise ClassifierError(f"{path}: image id {first!r} has two rows ({', '.join(rows)}); "
                              f"{int(dup.sum())} rows share ids ({spec.key})")  # fmt: skip


def _numeric(values: pd.Series, path: str, key: str, column: str) -> pd.Series:
    """Scores as floats; blank stays missing (checked against the sample later), anything else
    that is not a finite number raises naming its row."""
    text = values.astype("string").str.strip()
    blank = text.isna() | (text == "")
    number = pd.to_numeric(text.mask(blank), errors="coerce").astype("float64")
    bad = (~blank & (number.isna() | ~np.isfinite(number.fillna(0)))).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ClassifierError(f"{path}, {_where(path, row)}, column {column!r}: score "
                              f"{values.iloc[row]!r} is not a finite number ({key}; "
                              f"{int(bad.sum())} such value(s))")  # fmt: skip
    return number


def check_predictions(
    spec: ClassifierSpec,
    findings: Iterable[str],
    sample_ids: pd.Index,
    manifest_ids: Callable[[], pd.Index],
) -> pd.DataFrame:
    """The plan-time check of one user classifier: its findings are labels of the manifest,
    its file reads (`read_predictions`), each of its ids is an image of the manifest, and every
    sampled image has a score for every finding. Returns the predictions."""
    findings = list(findings)
    unknown = [f for f in spec.findings if f not in findings]
    if unknown:
        raise ClassifierError(f"{spec.key}.findings: {unknown[0]!r} is not a finding of the "
                              f"manifest (findings: {findings}; name label columns in "
                              "dataset.label_columns)")  # fmt: skip
    pred = read_predictions(spec)
    outside = ~pred["image_id"].isin(sample_ids)
    if outside.any():  # unsampled images of the manifest are fine; others are a mistake
        known = manifest_ids()
        stray = (outside & ~pred["image_id"].isin(known)).to_numpy()
        if stray.any():
            row = int(np.flatnonzero(stray)[0])
            raise ClassifierError(
                f"{spec.predictions}, {_where(spec.predictions, row)}: image id "
                f"{pred['image_id'].iloc[row]!r} is not in the manifest ({int(stray.sum())} "
                f"such id(s); the manifest's ids look like {list(known[:2])}; {spec.key})"
            )
    _check_coverage(pred, spec, sample_ids)
    return pred


def _check_coverage(pred: pd.DataFrame, spec: ClassifierSpec, sample_ids: pd.Index) -> None:
    """Every sampled image has a row (or, with `unscored: skip`, some have: the others are
    left out with a warning), and every row of a sampled image has a score."""
    missing = sample_ids.difference(pred["image_id"], sort=False)
    if len(missing):
        _unscored(spec, missing, len(sample_ids))
    sampled = pred[pred["image_id"].isin(sample_ids)]
    for finding, column in spec.findings.items():
        blank = sampled[finding].isna().to_numpy()
        if blank.any():
            rows = np.flatnonzero(pred["image_id"].isin(sample_ids).to_numpy())[blank]
            examples = [f"{pred['image_id'].iloc[r]} ({_where(spec.predictions, r)})"
                        for r in rows[:EXAMPLES]]  # fmt: skip
            raise ClassifierError(f"{spec.predictions}, column {column!r}: {int(blank.sum())} "
                                  f"sampled image(s) have no score, e.g. {examples} "
                                  f"({spec.key}.findings.{finding})")  # fmt: skip


def _unscored(spec: ClassifierSpec, missing: pd.Index, sampled: int) -> None:
    what = (f"{spec.predictions}: {len(missing)} of the {sampled} sampled images have no row, "
            f"e.g. {list(missing[:EXAMPLES])}")  # fmt: skip
    if spec.unscored != "skip":
        raise ClassifierError(f"{what} ({spec.key}; every sampled image needs a score, or set "
                              f"{spec.key}.unscored: skip to audit it on the images it "
                              "scored)")  # fmt: skip
    if len(missing) == sampled:
        raise ClassifierError(f"{what}: it scores none of them ({spec.key})")
    log.warning("%s; %s audits the %d it scored (unscored: skip)", what, spec.name,
                sampled - len(missing))  # fmt: skip


def _stamp(spec: ClassifierSpec, sample_sha: str) -> Path:
    """Where the verdict on this file, entry and sample is kept: unchanged, it is not read
    again when the workflow is next read."""
    st = os.stat(spec.predictions) if os.path.exists(spec.predictions) else None
    parts = [spec.__dict__, st and [st.st_size, st.st_mtime_ns], sample_sha,
             hashlib.sha256(Path(__file__).read_bytes()).hexdigest()]  # fmt: skip
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return Path(CHECKED_DIR) / f"{key[:24]}.ok"


def check_classifiers(
    config: dict[str, Any],
    findings: Iterable[str],
    sample_ids: Callable[[], pd.Index],
    manifest_ids: Callable[[], pd.Index],
    sample_sha: str = "",
) -> dict[str, ClassifierSpec]:
    """Plan time (rules/common.smk): every user classifier checked before any job; raises
    `ClassifierError` naming the key, file and row. Files checked before, unchanged against
    the same sample, are not read again. Returns the run's classifiers."""
    specs = classifier_specs(config)
    for spec in specs.values():
        if spec.probe is not None:
            continue
        stamp = _stamp(spec, sample_sha)
        if stamp.exists():
            continue
        check_predictions(spec, findings, sample_ids(), manifest_ids)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(spec.predictions + "\n")
    return specs


def normalise_predictions(
    spec: ClassifierSpec,
    manifest: pd.DataFrame,
    sample_ids: pd.Index,
    policy: LabelPolicy = KNOWN_ONLY,
) -> pd.DataFrame:
    """A user classifier as its long table: per finding, the sampled images labelled 1 or 0
    (`manifest` indexed by image_id), with their scores; -1 and blank labels as the probes
    read them (`policy`: the default ignores both)."""
    from cxratlas.analysis.probes import finding_labels

    pred = read_predictions(spec).set_index("image_id")
    parts = []
    for finding in spec.findings:
        labels = finding_labels(manifest, finding, policy)
        labels = labels[labels.index.isin(sample_ids)]
        score = pred[finding].reindex(labels.index)
        if spec.unscored == "skip":  # the images it did not score are not its to answer for
            labels, score = labels[score.notna()], score.dropna()
        if score.isna().any():  # the plan checked this; a file changed since reads here
            raise ClassifierError(f"{spec.predictions}: sampled image "
                                  f"{score.index[score.isna()][0]!r} has no {finding} score "
                                  f"({spec.key})")  # fmt: skip
        parts.append(_long(spec.name, finding, labels.index, labels, score))
    return _concat(parts)


def probe_classifier(scores: pd.DataFrame, model: str) -> pd.DataFrame:
    """A model's probe as the classifier `probe_<model>`: its out-of-fold scores
    (`probes.SCORE_COLUMNS`), as the subgroups read them, in the contract's dtypes."""
    from cxratlas.analysis.subgroup_classifiers import probe_classifiers

    own = probe_classifiers(scores[scores["model"] == model])
    return own.astype({"label": np.int8, "score": np.float64}).reset_index(drop=True)


def _long(name: str, finding: str, ids, labels, score) -> pd.DataFrame:
    return pd.DataFrame({"classifier": name, "finding": finding,
                         "image_id": np.asarray(ids, dtype=object),
                         "label": np.asarray(labels, np.int8),
                         "score": np.asarray(score, np.float64)})  # fmt: skip


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    from cxratlas.io import CLASSIFIER_COLUMNS

    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=t)
                for c, t in zip(
                    CLASSIFIER_COLUMNS, (object, object, object, np.int8, np.float64), strict=True
                )
            }
        )
    return pd.concat(parts, ignore_index=True)
