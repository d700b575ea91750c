"""How every classifier does inside a subgroup against outside it.

A classifier is a score table: `classifier, finding, image_id, label, score`
(`io.CLASSIFIER_COLUMNS`), one row per finding and image; each model's linear probe is one
(`probe_<model>`, its out-of-fold scores: `probe_classifiers`), and a user's classifier file
(`results/classifiers/<name>.parquet`) another.

Per classifier and finding, on the images with a known label and a score:

- `auroc_in`, `auroc_out`: AUROC inside the subgroup and outside it, and `delta` = in - out;
- `bnsp`, `bpsn` (Borkan et al. 2019, "Nuanced metrics for measuring unintended bias"): the
  subgroup's positives against the negatives outside it, and the positives outside against the
  subgroup's negatives. A subgroup that holds one class of a finding (drains are in
  pneumothorax positives) has no AUROC of its own; these still say whether its images are
  ranked as well as the rest.

Every figure has a 95% CI from one patient bootstrap (a patient's images drawn together; the
same draws for all five, so `delta`'s CI is paired). A figure needs `min_group` positives and
negatives where it takes them; otherwise it is NaN and `reason` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxratlas.analysis.probes import SCORED, SKIPPED, resample_weights
from cxratlas.io import CLASSIFIER_COLUMNS

SCORE_COLUMNS = list(CLASSIFIER_COLUMNS)
METRICS = ("auroc_in", "auroc_out", "bnsp", "bpsn")
PERFORMANCE_COLUMNS = ["classifier", "finding", "n_in", "positives_in", "n_out", "positives_out",
                       *(f"{m}{s}" for m in (*METRICS, "delta") for s in ("", "_low", "_high")),
                       "status", "reason"]  # fmt: skip


@dataclass(frozen=True)
class PerformanceSettings:
    min_group: int = 10  # positives and negatives a figure needs (analysis.shortcuts.min_group)
    bootstrap: int = 1000  # patient bootstrap resamples (analysis.probes.bootstrap)
    seed: int = 0


def probe_classifiers(scores: pd.DataFrame) -> pd.DataFrame:
    """The probes' out-of-fold scores (`probes/scores.parquet`) as classifiers `probe_<model>`."""
    return scores.assign(classifier="probe_" + scores["model"].astype(str))[SCORE_COLUMNS]


def read_classifier(path: str) -> pd.DataFrame:
    """A classifier's normalised score file, its columns checked."""
    import pyarrow.parquet as pq

    missing = [c for c in SCORE_COLUMNS if c not in pq.read_schema(path).names]
    if missing:
        raise ValueError(f"{path}: classifier scores lack column(s) {missing}")
    return pd.read_parquet(path, columns=SCORE_COLUMNS)


# the counts each figure needs `min_group` of
NEEDS = {"auroc_in": ("positive inside", "negative inside"),
         "auroc_out": ("positive outside", "negative outside"),
         "bnsp": ("positive inside", "negative outside"),
         "bpsn": ("negative inside", "positive outside")}  # fmt: skip


def _short(counts: dict[str, int], parts: tuple[str, str], min_group: int) -> str:
    few = [f"{counts[p]} {p}" for p in parts if counts[p] < min_group]
    return " and ".join(few)


def performance_row(
    scores: pd.DataFrame, inside_ids: pd.Index, patients: pd.Series, s: PerformanceSettings
) -> dict:
    """One `PERFORMANCE_COLUMNS` row for one classifier and finding (`scores`: its rows over
    the analysed images)."""
    names = {"classifier": scores["classifier"].iloc[0], "finding": scores["finding"].iloc[0]}
    scores = scores[scores["label"].isin([0, 1]) & scores["score"].notna()]
    y = scores["label"].to_numpy(np.int64).astype(bool)
    score = scores["score"].to_numpy(np.float64)
    inside = scores["image_id"].isin(inside_ids).to_numpy()
    counts = {"positive inside": int((inside & y).sum()),
              "negative inside": int((inside & ~y).sum()),
              "positive outside": int((~inside & y).sum()),
              "negative outside": int((~inside & ~y).sum())}  # fmt: skip
    row = {**names, "n_in": int(inside.sum()), "positives_in": counts["positive inside"],
           "n_out": int((~inside).sum()), "positives_out": counts["positive outside"]}  # fmt: skip
    scored, reasons = set(), []
    for metric, parts in NEEDS.items():
        short = _short(counts, parts, s.min_group)
        if short:
            reasons.append(f"{metric}: {short} image(s)")
        else:
            scored.add(metric)
    groups = patients.reindex(scores["image_id"]).to_numpy()
    values = _bootstrapped(y, score, inside, groups, scored, s)
    for metric in (*METRICS, "delta"):
        for suffix, v in zip(("", "_low", "_high"), values.get(metric, (np.nan,) * 3),
                             strict=True):  # fmt: skip
            row[f"{metric}{suffix}"] = v
    row["status"] = SCORED if scored & {"auroc_in", "bnsp", "bpsn"} else SKIPPED
    row["reason"] = _reason(reasons, s.min_group)
    return row


def _reason(reasons: list[str], min_group: int) -> str:
    if not reasons:
        return ""
    return (f"too few to score ({min_group} of each class needed, "
            f"analysis.shortcuts.min_group): " + "; ".join(reasons))  # fmt: skip


# each figure: where its positives and its negatives come from, inside or outside the subgroup
PARTS = {"auroc_in": ("in", "in"), "auroc_out": ("out", "out"), "bnsp": ("in", "out"),
         "bpsn": ("out", "in")}  # fmt: skip


def part_aurocs(y, score, inside, weights) -> dict[str, np.ndarray]:
    """Every figure of `PARTS` for each resample (row of `weights`: how often each image was
    drawn), rows sorted by `score`: the positives of one part against the negatives of one
    part, by the Mann-Whitney sum (ties count half), so the four share one pass over the
    weights instead of four over their subsets."""
    ties = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])  # first row of each value

    def per_value(w):  # weights summed over tied scores (reduceat is slow: only where needed)
        return w if len(ties) == len(score) else np.add.reduceat(w, ties, axis=1)

    part = {"in": inside, "out": ~inside}
    pos = {k: per_value(weights * (y & m)) for k, m in part.items()}
    neg = {k: per_value(weights * (~y & m)) for k, m in part.items()}
    # twice the negative weight below each value plus the tied one: integers, exact
    under = {}
    for k, n in neg.items():
        under[k] = np.cumsum(n, axis=1)
        under[k] *= 2
        under[k] -= n
    out = {}
    for metric, (p, n) in PARTS.items():
        n_pos, n_neg = pos[p].sum(1), neg[n].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.einsum("ij,ij->i", pos[p], under[n]) / (2.0 * n_pos * n_neg)
        out[metric] = np.where((n_pos > 0) & (n_neg > 0), value, np.nan)
    return out


def _bootstrapped(y, score, inside, patients, scored: set[str], s: PerformanceSettings):
    """Per figure in `scored` (and `delta`): (value, CI low, CI high), every figure over the
    same patient resamples."""
    order = np.argsort(score, kind="stable")
    y, score, inside, patients = y[order], score[order], inside[order], patients[order]
    full = part_aurocs(y, score, inside, np.ones((1, len(y)), np.int64))
    # the groups in score order: the same draws as in image order, their columns sorted
    blocks = [part_aurocs(y, score, inside, w)
              for w in resample_weights(patients, s.bootstrap, s.seed)]  # fmt: skip
    boots = {m: np.concatenate([np.empty(0), *(b[m] for b in blocks)]) for m in PARTS}
    out = {m: (float(full[m][0]), *_ci(boots[m])) for m in scored}
    if {"auroc_in", "auroc_out"} <= scored:
        delta = float(full["auroc_in"][0] - full["auroc_out"][0])
        out["delta"] = (delta, *_ci(boots["auroc_in"] - boots["auroc_out"]))
    return out


def _ci(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return np.nan, np.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def subgroup_performance(
    classifiers: list[pd.DataFrame], inside_ids: pd.Index, patients: pd.Series,
    s: PerformanceSettings,
) -> pd.DataFrame:  # fmt: skip
    """`PERFORMANCE_COLUMNS`, one row per classifier and finding of every score table, on the
    analysed images (`patients`' index): outside the subgroup means among those."""
    rows = []
    for table in classifiers:
        table = table[table["image_id"].isin(patients.index)]
        for _, scores in table.groupby(["classifier", "finding"], sort=False):
            rows.append(performance_row(scores, inside_ids, patients, s))
    return pd.DataFrame(rows, columns=PERFORMANCE_COLUMNS)
