"""UMAP on a precomputed kNN graph (umap-learn), for the 2-D map and the clustering space."""

from __future__ import annotations

import warnings

import numpy as np


def umap_on_graph(
    X: np.ndarray,
    knn_idx: np.ndarray,
    knn_dist: np.ndarray,
    n_components: int = 2,
    min_dist: float = 0.1,
    n_epochs: int | None = None,
    seed: int = 42,
) -> np.ndarray:
    """UMAP with metric cosine, fed the kNN graph so it is not searched again."""
    import umap

    k = knn_idx.shape[1]
    model = umap.UMAP(
        n_neighbors=k,
        n_components=n_components,
        metric="cosine",
        min_dist=min_dist,
        n_epochs=n_epochs,
        random_state=seed,
        precomputed_knn=(knn_idx, knn_dist, None),
        init="spectral" if X.shape[0] > n_components + 1 else "random",
    )
    with warnings.catch_warnings():
        # No NNDescent search index: we never call transform() on new data.
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")
        return model.fit_transform(X).astype(np.float32)
