"""How each finding probe holds up within subgroups, and whether its signal is the site.

`finding_scores` gives the pooled probe's out-of-fold scores (the folds `probes` uses, so the
pooled AUROC equals the probes table). `subgroup_auroc` scores them within each subgroup value
(AP and PA apart, each sex, age band, vendor, site, kept attribute) with patient-bootstrap CIs;
`largest_gaps` keeps the best and worst subgroup per finding, model and column, and whether their
CIs separate. `confounding` compares the pooled AUROC with (b) probes trained and tested inside
each site, averaged over sites by size, and (c) a probe on the metadata alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxratlas.analysis.metrics import auroc
from cxratlas.analysis.probes import (
    SCORED,
    SKIPPED,
    ProbeSettings,
    max_folds,
    oof_scores,
    patient_bootstrap_ci,
    patient_folds,
    probe_auroc,
    too_few,
)

SUBGROUP_COLUMNS = ["finding", "model", "attribute", "group", "n", "positives", "auroc",
                    "ci_low", "ci_high", "status", "reason"]  # fmt: skip
GAP_COLUMNS = ["finding", "model", "attribute", "best_group", "best_auroc", "worst_group",
               "worst_auroc", "gap", "separated", "groups"]  # fmt: skip


@dataclass
class FindingScores:
    """One finding's pooled probe for one model: labels, patients, out-of-fold scores."""

    finding: str
    model: str
    ids: pd.Index
    y: np.ndarray
    patients: np.ndarray
    score: np.ndarray
    X: np.ndarray

    @property
    def pooled(self) -> float:
        return auroc(self.y, self.score)

    def pooled_ci(self, s: ProbeSettings) -> tuple[float, float]:
        return patient_bootstrap_ci(self.y, self.score, self.patients, s.bootstrap, s.seed, auroc)


def finding_scores(
    finding: str, model: str, X: np.ndarray, labels: pd.Series, patients: pd.Series,
    s: ProbeSettings,
) -> FindingScores | None:  # fmt: skip
    """`labels`: 0/1 per image id, rows of X in the same order."""
    y = labels.to_numpy(np.int64)
    g = patients.reindex(labels.index).to_numpy()
    folds = max_folds(y, g, s.folds)
    if folds < 2:
        return None
    score = oof_scores(X, y, patient_folds(g, y, folds, s.seed))
    return FindingScores(finding, model, labels.index, y, g, score, X)


def subgroup_auroc(
    f: FindingScores, groups: pd.DataFrame, min_group: int, s: ProbeSettings
) -> list[dict]:
    """One row per (subgroup column, value): scored with at least `min_group` positives and
    negatives, else a skipped row with its counts and the reason."""
    rows = []
    for attribute in groups.columns:
        for group, mask in _masks(groups[attribute], f.ids):
            pos = int(f.y[mask].sum())
            short = too_few(pos, int(mask.sum()), min_group, "analysis.shortcuts.min_group")
            if short:
                rows.append({"finding": f.finding, "model": f.model, "attribute": attribute,
                             "group": str(group), "n": int(mask.sum()), "positives": pos,
                             "auroc": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                             "status": SKIPPED, "reason": short})  # fmt: skip
                continue
            low, high = patient_bootstrap_ci(f.y[mask], f.score[mask], f.patients[mask],
                                             s.bootstrap, s.seed, auroc)  # fmt: skip
            rows.append({"finding": f.finding, "model": f.model, "attribute": attribute,
                         "group": str(group), "n": int(mask.sum()), "positives": pos,
                         "auroc": auroc(f.y[mask], f.score[mask]),
                         "ci_low": low, "ci_high": high, "status": SCORED,
                         "reason": ""})  # fmt: skip
    return rows


def _masks(values: pd.Series, ids: pd.Index):
    """(value, boolean mask over `ids`) per known value, in order of appearance."""
    values = values.reindex(ids).astype("string")
    for group in values.dropna().unique():
        yield group, (values == group).fillna(False).to_numpy(bool)


def largest_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """Per finding, model and subgroup column scored in two groups or more: best vs worst."""
    rows = []
    if "status" in table:
        table = table[table["status"] == SCORED]
    for (finding, model, attribute), sub in table.groupby(["finding", "model", "attribute"],
                                                          sort=False):  # fmt: skip
        if len(sub) < 2:
            continue
        best, worst = sub.loc[sub["auroc"].idxmax()], sub.loc[sub["auroc"].idxmin()]
        rows.append({
            "finding": finding, "model": model, "attribute": attribute,
            "best_group": best["group"], "best_auroc": best["auroc"],
            "worst_group": worst["group"], "worst_auroc": worst["auroc"],
            "gap": best["auroc"] - worst["auroc"],
            "separated": bool(worst["ci_high"] < best["ci_low"]), "groups": len(sub),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=GAP_COLUMNS)


def within_site_auroc(
    f: FindingScores, site: pd.Series, min_group: int, s: ProbeSettings
) -> tuple[float, float, int]:
    """(size-weighted mean AUROC of probes trained and tested inside each site, the same mean
    of the pooled probe's out-of-fold scores ranked within each site, sites used).

    The first is the textbook check; it also pays for each site's smaller
    training set. The second keeps the pooled training and only removes the between-site part
    of the ranking, so a drop in both is the site, not the sample size."""
    retrained, scored, weights = [], [], []
    for _, mask in _masks(site, f.ids):
        pos = int(f.y[mask].sum())
        if pos < min_group or mask.sum() - pos < min_group:
            continue
        r = probe_auroc(f.X[mask], f.y[mask], f.patients[mask], s.folds, 0, s.seed)
        if not np.isnan(r["auroc"]):
            retrained.append(r["auroc"])
            scored.append(auroc(f.y[mask], f.score[mask]))
            weights.append(mask.sum())
    if not retrained:
        return float("nan"), float("nan"), 0
    return (float(np.average(retrained, weights=weights)),
            float(np.average(scored, weights=weights)), len(retrained))  # fmt: skip


def metadata_auroc(
    labels: pd.Series, groups: pd.DataFrame, patients: pd.Series, s: ProbeSettings
) -> tuple[float, float, float]:
    """(AUROC, CI low, CI high), out of fold, of a logistic regression on the subgroup columns
    alone (one-hot, unknown as its own value): how far the metadata predict the finding without
    any image."""
    nan = (float("nan"),) * 3
    if groups.empty or not len(groups.columns):
        return nan
    features = pd.get_dummies(groups.reindex(labels.index).fillna("unknown"), dtype=float)
    y = labels.to_numpy(np.int64)
    g = patients.reindex(labels.index).to_numpy()
    folds = max_folds(y, g, s.folds)
    if folds < 2 or features.shape[1] == 0:
        return nan
    score = oof_scores(features.to_numpy(), y, patient_folds(g, y, folds, s.seed))
    return (auroc(y, score), *patient_bootstrap_ci(y, score, g, s.bootstrap, s.seed, auroc))
