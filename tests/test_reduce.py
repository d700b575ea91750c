import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from cxratlas.reduce import ReduceSettings, reduce_embeddings
from cxratlas.reduce.cpu import locality_order
from cxratlas.reduce.knn import KnnSettings, knn_graph, knn_recall, l2_normalise
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
    idx, dist, method = knn_graph(X, 10, KnnSettings(method="exact"))
    assert method == "exact"
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
    r = reduce_embeddings(
        X, ReduceSettings(k=15, seed=0, cluster_space=space, cluster_dims=4, min_cluster_size=15)
    )
    n = len(X)
    assert r.xy.shape == (n, 2) and np.isfinite(r.xy).all()
    assert r.knn_idx.shape == (n, 15) and (r.knn_idx[:, 0] == np.arange(n)).all()
    inl = labels >= 0
    assert adjusted_rand_score(labels[inl], r.cluster[inl]) > 0.9
    assert roc_auc_score(labels < 0, r.outlier) > 0.95
    assert {"pca_s", "knn_s", "recall_s", "umap_s", "trust_s", "cluster_s"} == set(r.timings)
    assert r.quality["knn"]["method"] == "exact" and r.quality["knn"]["recall"] == 1.0
    assert r.quality["trustworthiness"] > 0.9 and r.quality["backend"] == "cpu"


def test_reduce_rejects_tiny_input():
    with pytest.raises(ValueError, match="at least 3"):
        reduce_embeddings(np.ones((2, 4), np.float32))


def _clustered(n=3000, d=96, centres=30, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d))
    return l2_normalise(c[rng.integers(0, centres, n)] + 0.4 * rng.normal(size=(n, d)))


def test_recall_is_measured_not_assumed():
    X = _clustered()
    idx, _, _ = knn_graph(X, 10, KnnSettings(method="exact"))
    assert knn_recall(X, idx, sample=500) == 1.0
    broken = idx.copy()
    broken[:, 5:] = np.random.default_rng(0).integers(0, len(X), (len(X), 5))  # 5 of 9 replaced
    assert abs(knn_recall(X, broken, sample=500) - 4 / 9) < 0.03


@pytest.mark.parametrize("method", ["cells", "hnsw", "ivf"])
def test_approximate_knn_past_the_exact_range(method):
    X = _clustered()
    s = KnnSettings(method="auto", exact_max=1000, ivf_nprobe=8, cell_size=100)
    if method != "cells":
        s.method = method
    idx, dist, used = knn_graph(X, 10, s)
    assert used == method  # auto past exact_max on a CPU is cells
    assert (idx[:, 0] == np.arange(len(X))).all() and (dist[:, 0] == 0).all()
    assert knn_recall(X, idx, sample=500) > 0.9
    assert np.all(np.diff(dist[:, 1:], axis=1) >= -1e-5)


def test_pca_before_the_graph_is_reported_and_keeps_structure():
    X, labels = _blobs(d=256)
    base = ReduceSettings(k=15, seed=0, min_cluster_size=15)
    r = reduce_embeddings(X, base.but(pca=16, knn=KnnSettings(target_recall=0)))
    assert r.quality["pca"]["components"] == 16
    assert 0.5 < r.quality["pca"]["explained_variance"] <= 1.0
    inl = labels >= 0
    assert adjusted_rand_score(labels[inl], r.cluster[inl]) > 0.9
    # recall is measured in the original space, so keeping more components raises it,
    # and re-ranking PCA-space candidates in the full space raises it again
    plain = KnnSettings(refine=1, target_recall=0)  # the configured effort, untuned
    r16 = reduce_embeddings(X, base.but(pca=16, knn=plain))
    r200 = reduce_embeddings(X, base.but(pca=200, knn=plain))
    assert 0 < r16.quality["knn"]["recall"] < r200.quality["knn"]["recall"] < 1.0
    assert r.quality["knn"]["method"] == "exact+refine3"
    assert r.quality["knn"]["recall"] > r16.quality["knn"]["recall"] + 0.1


def test_a_matrix_given_up_is_freed_before_umap_and_changes_nothing():
    X, _ = _blobs(d=256)
    s = ReduceSettings(k=15, seed=0, min_cluster_size=15, pca=16)
    kept = X.copy()
    r_kept = reduce_embeddings(kept, s)  # not given up: the caller's matrix is untouched
    given = X.copy()
    r_given = reduce_embeddings(given, s, inplace=True)
    assert given.shape == (0, 256) and np.array_equal(kept, X)  # its memory went back
    assert np.array_equal(r_kept.xy, r_given.xy) and np.array_equal(r_kept.knn_idx, r_given.knn_idx)
    assert r_kept.quality["trustworthiness"] == r_given.quality["trustworthiness"] > 0.8
    no_pca = X.copy()  # without PCA, UMAP lays out the matrix itself: it is kept
    reduce_embeddings(no_pca, s.but(pca=None), inplace=True)
    assert no_pca.shape == X.shape


def test_the_layout_order_puts_graph_neighbours_near_each_other():
    n, rng = 3000, np.random.default_rng(0)
    ring = np.arange(n)[:, None] + np.array([0, -3, -2, -1, 1, 2, 3])  # self, then a ring
    label = rng.permutation(n)  # stored in shuffled order, as a manifest would be
    idx = np.empty((n, 7), np.int64)
    idx[label] = label[ring % n]
    order = locality_order(idx)
    assert sorted(order.tolist()) == list(range(n))
    where = np.empty(n, np.int64)
    where[order] = np.arange(n)

    def gap(i):
        return np.abs(i[:, 1:] - i[:, :1]).mean()

    assert gap(idx) > n / 5 and gap(where[idx[order]]) < 10


def test_backend_choice_and_the_cpu_path_never_imports_rapids(monkeypatch):
    import subprocess
    import sys

    from cxratlas.reduce import gpu
    from cxratlas.reduce.backend import select_backend

    monkeypatch.setattr(gpu, "_torch_cuda", lambda: False)  # as here, also on a GPU machine

    assert select_backend("cpu").name == "cpu"
    assert select_backend("auto").name == "cpu"  # no cuML here
    with pytest.raises(RuntimeError, match="reduce.backend is 'gpu' but cuML is not installed"):
        select_backend("gpu")
    code = (
        "import sys, numpy as np\n"
        "from cxratlas.reduce import ReduceSettings, reduce_embeddings\n"
        "reduce_embeddings(np.random.default_rng(0).normal(size=(60, 8)).astype('f4'),"
        " ReduceSettings(k=5, backend='cpu', min_cluster_size=5))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cuml', 'cudf', 'cupy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_gpu_without_rapids_takes_the_torch_backend_and_auto_stays_on_the_cpu(monkeypatch):
    from cxratlas.reduce import gpu
    from cxratlas.reduce.backend import select_backend

    monkeypatch.setattr(gpu, "_torch_cuda", lambda: True)  # a GPU node with torch, no cuML
    assert gpu.gpu_engine()[0] == "torch"
    chosen = select_backend("gpu")
    assert (chosen.engine, chosen.device, chosen.gpu) == ("torch", "cuda", True)
    assert select_backend("auto").engine == "umap-learn"  # never the torch layout unasked


@pytest.mark.parametrize("generator", ["subspace", "isotropic"])
def test_landmark_layout_keeps_trustworthiness_and_recovers_clusters(generator):
    """UMAP and HDBSCAN on a fifth of the rows, the rest placed from their kNN: as trustworthy
    as the full layout (within 0.01), planted families found, every row placed, reproducible."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from reduce import GENERATORS

    X = GENERATORS[generator](3000, 128, seed=4)
    s = ReduceSettings(min_cluster_size=10, trust_sample=3000)
    full = reduce_embeddings(X.copy(), s.but(landmarks=None))
    ours = reduce_embeddings(X.copy(), s.but(landmarks=600))
    q = ours.quality["landmarks"]
    assert q["n"] == 600 and q["unplaced"] == 0 and q["rounds"] >= 1
    assert q["knn"]["recall"] >= 0.95  # the landmarks' own graph, at the recall target
    assert 0.15 < q["trust_sample_share"] < 0.25  # landmarks are not the scored rows
    assert {"landmark_knn_s", "umap_s", "cluster_s", "place_s"} <= set(ours.timings)
    assert "landmarks" not in full.quality
    assert ours.quality["trustworthiness"] >= full.quality["trustworthiness"] - 0.01
    assert adjusted_rand_score(full.cluster, ours.cluster) > 0.5
    assert (ours.cluster >= 0).mean() > 0.5
    again = reduce_embeddings(X.copy(), s.but(landmarks=600))
    assert np.array_equal(ours.xy, again.xy) and np.array_equal(ours.cluster, again.cluster)


def test_landmarks_auto_past_250k_vectors():
    s = ReduceSettings()
    assert s.for_matrix(100_000, 768)[0].landmarks is None  # the 100k path is unchanged
    assert s.for_matrix(1_000_000, 768)[0].landmarks == 200_000
    assert s.for_matrix(2_400_000, 768)[0].landmarks == 480_000
    assert s.but(landmarks=None).for_matrix(1_000_000, 768)[0].landmarks is None
    assert s.but(landmarks=5000).for_matrix(4000, 768)[0].landmarks is None  # fewer rows
    assert s.but(landmarks=500).for_matrix(4000, 768)[0].landmarks == 500


def test_weighted_vote_takes_the_heaviest_label_and_the_smaller_on_a_tie():
    from cxratlas.reduce.placement import weighted_vote

    labels = np.array([[3, 1, 1, 2], [5, 4, 5, 4], [-1, 2, 2, 7], [9, 9, 8, 8]], np.int32)
    weights = np.array([[5, 2, 2, 0], [1, 1, 1, 1], [3, 1, 1, 0], [0, 0, 1, 0]], float)
    assert weighted_vote(labels, weights).tolist() == [3, 4, -1, 8]
