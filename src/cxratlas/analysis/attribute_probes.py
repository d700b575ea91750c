"""What each model encodes besides disease: probes that predict the subgroups from embeddings.

Per model and subgroup column (sex, age band, view, vendor, dataset, study year, and each
`keep_columns` attribute such as site or race): a standardised logistic regression on the frozen
embeddings, patient-level folds, out-of-fold macro one-vs-rest AUROC (plain AUROC for two
values) with a patient-bootstrap 95% CI, and the same probe on shuffled labels as the chance
control. Age is also regressed in years (ridge), reported as MAE with its CI and control.
Values held by fewer than `min_positives` images are left out; a column needs two values left.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cxratlas.analysis.metrics import auroc, group_folds, macro_auroc, mae, oof_proba, oof_ridge
from cxratlas.analysis.probes import (
    ProbeSettings,
    max_folds,
    patient_bootstrap_ci,
    patient_folds,
)

log = logging.getLogger(__name__)

COLUMNS = ["model", "attribute", "metric", "classes", "n", "value", "ci_low", "ci_high",
           "control", "detail"]  # fmt: skip


def attribute_probes(
    loaded: dict[str, tuple], groups: pd.DataFrame, patients: pd.Series, s: ProbeSettings,
    age: pd.Series | None = None,
) -> pd.DataFrame:  # fmt: skip
    """One row per (model, attribute): `groups` holds the subgroup strings per image id
    (`subgroups.subgroup_frame`), `patients` the patient per image id, `age` the years."""
    rows = []
    for m, (ids, X, _) in loaded.items():
        index = pd.Index(ids)
        for attribute in groups.columns:
            row = _categorical(X, index, groups[attribute], patients, s)
            if row:
                rows.append({"model": m, "attribute": attribute, **row})
        if age is not None:
            row = _age_years(X, index, age, patients, s)
            if row:
                rows.append({"model": m, "attribute": "age", **row})
    table = pd.DataFrame(rows, columns=COLUMNS)
    for r in table.itertuples():
        log.info("attribute probe %s / %s: %s %.3f (%.3f-%.3f), shuffled %.3f", r.attribute,
                 r.model, r.metric, r.value, r.ci_low, r.ci_high, r.control)  # fmt: skip
    return table


def _categorical(X, index, values: pd.Series, patients, s: ProbeSettings) -> dict | None:
    values = values.reindex(index).dropna()
    counts = values.value_counts()
    keep = counts.index[counts >= s.min_positives]
    values = values[values.isin(keep)]
    if len(keep) < 2:
        return None
    classes = sorted(keep)
    codes = pd.Categorical(values, categories=classes).codes.astype(np.int64)
    g = patients.reindex(values.index).to_numpy()
    folds = max_folds(codes, g, s.folds)
    if folds < 2:
        return None
    Xa = X[index.get_indexer(values.index)]
    fold = patient_folds(g, codes, folds, s.seed)
    proba = oof_proba(Xa, codes, fold, len(classes))
    metric = auroc if len(classes) == 2 else macro_auroc
    score = proba[:, 1] if len(classes) == 2 else proba
    low, high = patient_bootstrap_ci(codes, score, g, s.bootstrap, s.seed, metric)
    shuffled = np.random.default_rng(s.seed).permutation(codes)
    control_p = oof_proba(Xa, shuffled, fold, len(classes))
    control = metric(shuffled, control_p[:, 1] if len(classes) == 2 else control_p)
    return {
        "metric": "auroc" if len(classes) == 2 else "macro_auroc",
        "classes": len(classes), "n": len(codes), "value": metric(codes, score),
        "ci_low": low, "ci_high": high, "control": control,
        "detail": ", ".join(f"{c} {int(counts[c])}" for c in classes),
    }  # fmt: skip


def _age_years(X, index, age: pd.Series, patients, s: ProbeSettings) -> dict | None:
    years = pd.to_numeric(age.reindex(index), errors="coerce").dropna()
    g = patients.reindex(years.index).to_numpy()
    folds = min(s.folds, len(np.unique(g)))
    if len(years) < 2 * s.min_positives or folds < 2:
        return None
    Xa = X[index.get_indexer(years.index)]
    target = years.to_numpy(float)
    fold = group_folds(g, folds, s.seed)
    pred = oof_ridge(Xa, target, fold)
    low, high = patient_bootstrap_ci(target, pred, g, s.bootstrap, s.seed, mae)
    shuffled = np.random.default_rng(s.seed).permutation(target)
    control = mae(shuffled, oof_ridge(Xa, shuffled, fold))
    return {
        "metric": "mae_years", "classes": 0, "n": len(target), "value": mae(target, pred),
        "ci_low": low, "ci_high": high, "control": control,
        "detail": f"mean age {target.mean():.1f}, predicting it gives MAE "
                  f"{mae(target, np.full_like(target, target.mean())):.1f}",
    }  # fmt: skip
