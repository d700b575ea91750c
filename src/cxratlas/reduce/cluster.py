"""HDBSCAN on a low-dimensional space (the 2-D map or a small UMAP), never on raw vectors."""

from __future__ import annotations

import numpy as np


def hdbscan_labels(
    Y: np.ndarray, min_cluster_size: int = 10, min_samples: int | None = None
) -> np.ndarray:
    """Cluster labels (int32; -1 is noise). Quadratic cost is fine on 2-8 dimensions."""
    from sklearn.cluster import HDBSCAN

    if Y.shape[0] < max(min_cluster_size, 2):
        return np.full(Y.shape[0], -1, np.int32)
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, copy=True)
    return model.fit_predict(Y).astype(np.int32)
