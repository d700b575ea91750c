"""Metrics the audit computes many times (inside bootstraps): rank AUROC, macro one-vs-rest
AUROC, MAE, each written once over a matrix of resample weights (`WEIGHTED`: one bootstrap
resample a row, how often each image was drawn; the plain metric is one row of ones); and
out-of-fold predictions for multi-class and numeric targets."""

from __future__ import annotations

import numpy as np


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """AUROC by the rank-sum (Mann-Whitney) formula, ties averaged: equal to scikit-learn's
    roc_auc_score, about 10x faster on small arrays; NaN when a class is absent."""
    return float(auroc_weighted(y, score, np.ones((1, len(score))))[0])


def macro_auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the classes present with both outcomes (codes 0..K-1)."""
    return float(macro_auroc_weighted(np.asarray(y), proba, np.ones((1, len(proba))))[0])


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(mae_weighted(y, pred, np.ones((1, len(y))))[0]) if len(y) else np.nan


def auroc_weighted(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`auroc` of each resample (row of `weights`, B x n: how often each row was drawn) at once:
    the Mann-Whitney sum over the scores sorted once, with each resample's weights in place of
    repeated rows (ties count half, as in ranks); NaN where a resample lacks a class."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(score, kind="stable")
    ranked = np.asarray(score)[order]
    ties = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # first row of each value
    w = np.asarray(weights, np.float64)[:, order]
    pos = np.add.reduceat(w * y[order], ties, axis=1)
    neg = np.add.reduceat(w * ~y[order], ties, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight under each value
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (pos * (below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), value, np.nan)


def macro_auroc_weighted(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`macro_auroc` of each resample (row of `weights`)."""
    k = proba.shape[1]
    values = np.stack([auroc_weighted(y == c, proba[:, c], weights) for c in range(k)], axis=1)
    present = (~np.isnan(values)).sum(1)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(present[:, None] > 0, values, 0.0), axis=1)
    return np.where((present >= 2) | ((k == 2) & (present > 0)), mean, np.nan)


def mae_weighted(y: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`mae` of each resample (row of `weights`)."""
    err = np.abs(np.asarray(y, float) - np.asarray(pred, float))
    return (weights @ err) / weights.sum(1)


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN (an untestable row) stays NaN and is not
    counted among the tests."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, float)
    out = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


# the resample form of each metric a bootstrap CI is computed for (probes.patient_bootstrap_ci)
WEIGHTED = {auroc: auroc_weighted, macro_auroc: macro_auroc_weighted, mae: mae_weighted}


def oof_proba(X: np.ndarray, codes: np.ndarray, fold: np.ndarray, n_classes: int) -> np.ndarray:
    """Out-of-fold class probabilities of a standardised multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    proba = np.zeros((len(codes), n_classes))
    for f in np.unique(fold):
        test = fold == f
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(X[~test], codes[~test])
        proba[np.ix_(test, model.classes_)] = model.predict_proba(X[test])
    return proba


def oof_ridge(X: np.ndarray, target: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions of a standardised ridge regression (e.g. age in years)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.empty(len(target))
    for f in np.unique(fold):
        test = fold == f
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
        model.fit(X[~test], target[~test])
        pred[test] = model.predict(X[test])
    return pred


def group_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold per row with every patient's rows in one fold (for numeric targets)."""
    from sklearn.model_selection import GroupKFold

    fold = np.empty(len(groups), np.int64)
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(groups)), groups=groups)):
        fold[test] = i
    return fold
