"""Which model's embeddings classify a finding better: the paired, patient-level bootstrap of
the difference between two models' probe AUROCs.

Every model's probe of a finding is scored on the same images, labels and patient folds
(`probes.run_probes`), so one resample of patients scores every model on the same images: the
spread of a difference is that of the pair, which two separate CIs overstate (the models' errors
on hard images are correlated). Per finding and pair of models, oriented so that `model_a` has
the higher AUROC:

- `difference` = AUROC(a) - AUROC(b), its 95% percentile CI over the resamples;
- `p_value`: twice the smaller share of resamples on either side of 0 (each side counted with
  one added, so no p is 0 from a finite bootstrap);
- `p_adjusted`: Benjamini-Hochberg over every pair of every finding (the table is a search);
- `separated`: `p_adjusted` below `ALPHA`, and model a's own probe CI above chance: with
  shuffled labels every probe sits near 0.5 and no difference between them is a finding.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from cxratlas.analysis.metrics import auroc, auroc_weighted, bh_adjust
from cxratlas.analysis.probes import resample_weights

ALPHA = 0.05
COLUMNS = ["finding", "model_a", "model_b", "n", "auroc_a", "auroc_b", "difference", "ci_low",
           "ci_high", "p_value", "p_adjusted", "separated"]  # fmt: skip


def resampled_aurocs(
    y: np.ndarray, scores: dict[str, np.ndarray], groups: np.ndarray, bootstrap: int, seed: int
) -> dict[str, np.ndarray]:
    """Each model's AUROC over the same patient resamples (NaN where a resample lacks a class)."""
    out: dict[str, list] = {m: [] for m in scores}
    for w in resample_weights(groups, bootstrap, seed):
        for m, s in scores.items():
            out[m].append(auroc_weighted(y, s, w))
    return {m: np.concatenate(v) if v else np.empty(0) for m, v in out.items()}


def _pair(finding, a, b, y, scores, boots) -> dict:
    point = {m: auroc(y, scores[m]) for m in (a, b)}
    if point[b] > point[a]:
        a, b = b, a
    d = boots[a] - boots[b]
    d = d[~np.isnan(d)]
    low, high = np.percentile(d, [2.5, 97.5]) if len(d) else (np.nan, np.nan)
    below, above = (d <= 0).sum() + 1, (d >= 0).sum() + 1
    p = min(1.0, 2 * min(below, above) / (len(d) + 1)) if len(d) else np.nan
    return {"finding": finding, "model_a": a, "model_b": b, "n": len(y), "auroc_a": point[a],
            "auroc_b": point[b], "difference": point[a] - point[b], "ci_low": float(low),
            "ci_high": float(high), "p_value": p}  # fmt: skip


def paired_differences(
    scores: pd.DataFrame, probes: pd.DataFrame, groups: pd.Series, bootstrap: int, seed: int
) -> pd.DataFrame:
    """One row per finding and pair of models from the probes' out-of-fold `scores`
    (`probes.SCORE_COLUMNS`), `probes` (their table, for each probe's CI) and `groups` (patient
    id per image id)."""
    rows = []
    for finding, sub in scores.groupby("finding", sort=False):
        wide = sub.pivot(index="image_id", columns="model", values="score")
        models = list(dict.fromkeys(sub["model"]))
        y = sub.drop_duplicates("image_id").set_index("image_id")["label"]
        y = y.reindex(wide.index).to_numpy()
        by_model = {m: wide[m].to_numpy() for m in models}
        boots = resampled_aurocs(y, by_model, groups.reindex(wide.index).to_numpy(),
                                 bootstrap, seed)  # fmt: skip
        rows += [_pair(finding, a, b, y, by_model, boots)
                 for a, b in itertools.combinations(models, 2)]  # fmt: skip
    table = pd.DataFrame(rows, columns=COLUMNS[:-2])
    table["p_adjusted"] = bh_adjust(table["p_value"].to_numpy(float))
    low = probes.set_index(["finding", "model"])["ci_low"]
    above_chance = [
        low.get((f, a), np.nan) > 0.5
        for f, a in zip(table["finding"], table["model_a"], strict=True)
    ]
    table["separated"] = (table["p_adjusted"] < ALPHA) & np.asarray(above_chance, bool)
    return table[COLUMNS]
