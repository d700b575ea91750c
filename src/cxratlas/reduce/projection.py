"""What both backends' PCA share: fit on a seeded row sample, then project every row in blocks
(the full matrix may not fit the fitting library's working memory, or the GPU)."""

from __future__ import annotations

import numpy as np


def fit_and_project(
    model, X: np.ndarray, n_components: int, seed: int, fit_max: int, block: int
) -> np.ndarray:
    """Fit `model` (a PCA with fit/transform) on at most `fit_max` rows of X; float32 scores."""
    rng = np.random.default_rng(seed)
    fit = X if len(X) <= fit_max else X[np.sort(rng.choice(len(X), fit_max, replace=False))]
    model.fit(fit)
    out = np.empty((len(X), n_components), np.float32)
    for start in range(0, len(X), block):
        out[start : start + block] = model.transform(X[start : start + block])
    return out
