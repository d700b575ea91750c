"""Metrics the audit computes many times (inside bootstraps): rank AUROC, macro one-vs-rest
AUROC, MAE; and out-of-fold predictions for multi-class and numeric targets."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """AUROC by the rank-sum (Mann-Whitney) formula, ties averaged: equal to scikit-learn's
    roc_auc_score, about 10x faster on small arrays; NaN when a class is absent."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the classes present with both outcomes (codes 0..K-1)."""
    values = [auroc(y == k, proba[:, k]) for k in range(proba.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if len(values) >= 2 or proba.shape[1] == 2 else float("nan")


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return (
        float(np.mean(np.abs(np.asarray(y, float) - np.asarray(pred, float)))) if len(y) else np.nan
    )


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
