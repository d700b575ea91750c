"""The CPU backend: scikit-learn PCA, umap-learn on a given kNN graph, scikit-learn HDBSCAN."""

from __future__ import annotations

import warnings

import numpy as np

from cxratlas.reduce.projection import fit_and_project
from cxratlas.reduce.settings import UmapSettings


class CPUBackend:
    name = "cpu"
    engine = "umap-learn"
    gpu = False

    def pca(self, X: np.ndarray, n_components: int, seed: int, fit_max: int = 25_000):
        """Project onto the top principal components (fitted on at most `fit_max` rows, then
        applied in blocks). Returns (float32 scores, explained variance ratio sum). The top
        components of a 768-d matrix are settled long before 25k rows; fitting on 100k cost
        4 s of a 100k reduction and changed nothing downstream."""
        from sklearn.decomposition import PCA

        model = PCA(n_components=n_components, svd_solver="randomized", random_state=seed)
        out = fit_and_project(model, X, n_components, seed, fit_max, block=65536)
        return out, float(model.explained_variance_ratio_.sum())

    def umap(
        self,
        X: np.ndarray,
        knn_idx: np.ndarray,
        knn_dist: np.ndarray,
        n_components: int,
        layout: UmapSettings,
    ) -> np.ndarray:
        """UMAP with metric cosine, fed the kNN graph so it is not searched again. A seed makes
        it reproducible and single-threaded (umap-learn's rule); None runs it in parallel.
        The rows are laid out in an order that keeps neighbours together in memory, and the
        map is returned in the input's order."""
        order = locality_order(knn_idx)
        where = np.empty_like(order)
        where[order] = np.arange(len(order))
        xy = self._umap(X[order], where[knn_idx[order]], knn_dist[order], n_components, layout)
        return xy[where]

    def _umap(self, X, knn_idx, knn_dist, n_components: int, layout: UmapSettings):
        import umap

        k = knn_idx.shape[1]
        model = umap.UMAP(
            n_neighbors=k,
            n_components=n_components,
            metric="cosine",
            min_dist=layout.min_dist,
            n_epochs=layout.n_epochs,
            random_state=layout.seed,
            precomputed_knn=(knn_idx, knn_dist, None),
            init=layout.init if X.shape[0] > n_components + 1 else "random",
        )
        with warnings.catch_warnings():
            # No NNDescent search index: we never call transform() on new data.
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")
            return model.fit_transform(X).astype(np.float32)

    def hdbscan(
        self, Y: np.ndarray, min_cluster_size: int = 10, min_samples: int | None = None
    ) -> np.ndarray:
        """Cluster labels (int32; -1 is noise) on a low-dimensional space, never raw vectors.

        The `hdbscan` package's Boruvka k-d tree takes 3 s where scikit-learn's HDBSCAN takes
        31 s on 100k 2-D points (2 cores); scikit-learn is the fallback."""
        if Y.shape[0] < max(min_cluster_size, 2):
            return np.full(Y.shape[0], -1, np.int32)
        try:
            import hdbscan
        except ImportError:
            from sklearn.cluster import HDBSCAN

            model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples)
            return model.fit_predict(Y).astype(np.int32)
        model = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size, min_samples=min_samples, core_dist_n_jobs=-1
        )
        return model.fit_predict(np.asarray(Y, np.float64)).astype(np.int32)


def locality_order(idx: np.ndarray) -> np.ndarray:
    """A row order that puts graph neighbours near each other in memory (reverse
    Cuthill-McKee on the kNN graph): UMAP's layout then finds a point's neighbours in cache.
    At 1M points (2 cores) it took 1.2 s and cut 10 epochs of UMAP from 40.0 s to 35.6 s in
    the same process; a full 100-epoch run was not faster than an earlier one without it."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n, k = idx.shape
    graph = csr_matrix(
        (np.ones(idx.size, np.int8), idx.ravel(), np.arange(0, idx.size + 1, k)), shape=(n, n)
    )
    return reverse_cuthill_mckee(graph, symmetric_mode=False).astype(np.int64)
