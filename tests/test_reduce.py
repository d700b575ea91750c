import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from cxratlas.reduce import reduce_embeddings
from cxratlas.reduce.knn import exact_knn, l2_normalise
from cxratlas.reduce.outliers import knn_outlier_score, knn_pagerank


def _blobs(n_per=80, k=4, d=64, n_out=12, seed=0):
    """k tight directions on the sphere plus scattered outliers."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    X = np.concatenate([c + 0.15 * rng.normal(size=(n_per, d)) for c in centres])
    labels = np.repeat(np.arange(k), n_per)
    out = rng.normal(size=(n_out, d)) * 1.0
    return np.concatenate([X, out]).astype(np.float32), np.concatenate([labels, [-1] * n_out])


def test_exact_knn_matches_brute_force_and_puts_self_first():
    X = l2_normalise(np.random.default_rng(1).normal(size=(200, 16)))
    X[5] = X[6]  # an exact duplicate ties with its twin
    idx, dist = exact_knn(X, 10)
    sims = X @ X.T
    for r in range(len(X)):
        assert idx[r, 0] == r and dist[r, 0] == 0
        expect = set(np.argsort(-sims[r])[:10])
        if r not in (5, 6):
            assert set(idx[r]) == expect
        assert np.allclose(dist[r], 1 - sims[r, idx[r]], atol=1e-5)
        assert np.all(np.diff(dist[r][1:]) >= -1e-6)
    assert 6 in idx[5] and 5 in idx[6]


def test_outlier_score_and_pagerank():
    dist = np.array([[0, 0.1, 0.2], [0, 0.5, 0.7]], np.float32)
    assert np.allclose(knn_outlier_score(dist), [0.15, 0.6])
    # star graph: everyone points at node 0, so node 0 ranks first
    idx = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [3, 0, 1]])
    pr = knn_pagerank(idx)
    assert pr.argmax() == 0 and abs(pr.sum() - 1) < 1e-6


@pytest.mark.parametrize("space", ["map", "umap"])
def test_reduce_recovers_planted_clusters_and_outliers(space):
    X, labels = _blobs()
    r = reduce_embeddings(X, k=15, seed=0, cluster_space=space, cluster_dims=4, min_cluster_size=15)
    n = len(X)
    assert r.xy.shape == (n, 2) and np.isfinite(r.xy).all()
    assert r.knn_idx.shape == (n, 15) and (r.knn_idx[:, 0] == np.arange(n)).all()
    inl = labels >= 0
    assert adjusted_rand_score(labels[inl], r.cluster[inl]) > 0.9
    assert roc_auc_score(labels < 0, r.outlier) > 0.95
    assert set(r.timings) == {"knn_s", "umap_s", "cluster_s"}


def test_reduce_rejects_tiny_input():
    with pytest.raises(ValueError, match="at least 3"):
        reduce_embeddings(np.ones((2, 4), np.float32))
