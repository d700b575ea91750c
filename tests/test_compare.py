"""Cross-model metrics, each checked against a hand-computed case or a reference form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cxratlas.analysis.compare import compare_models, linear_cka
from cxratlas.io import embedding_table, reduced_table, write_parquet
from cxratlas.reduce import ReduceSettings, reduce_embeddings
from cxratlas.reduce.neighbours import agreement, aligned_neighbours, knn_jaccard, knn_kept


def test_jaccard_and_kept_by_hand():
    a = np.array([[0, 1, 2, 3], [1, 0, 2, -1]])
    b = np.array([[0, 2, 3, 4], [1, 3, 4, 5]])
    # row 0: {1,2,3} vs {2,3,4}: 2 shared, union 4; row 1: {0,2} vs {3,4,5}: 0 shared
    assert np.allclose(knn_jaccard(a, b), [2 / 4, 0.0])
    assert np.allclose(knn_kept(a, b), [2 / 3, 0.0])
    assert np.allclose(knn_jaccard(a, a), [1.0, 1.0])


def _hsic_cka(X, Y):
    """Kernel form: HSIC of centred linear Gram matrices (Kornblith et al. 2019, eq. 3)."""
    n = len(X)
    H = np.eye(n) - 1 / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L))


def test_linear_cka_matches_the_kernel_form_and_its_invariances():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 30))
    Y = X[:, :10] @ rng.normal(size=(10, 20)) + 0.5 * rng.normal(size=(200, 20))
    assert linear_cka(X, Y) == pytest.approx(_hsic_cka(X, Y), rel=1e-9)
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    assert linear_cka(X, 3.0 * X @ Q + 7.0) == pytest.approx(
        1.0, abs=1e-9
    )  # rotation, scale, shift
    assert linear_cka(X, rng.normal(size=(200, 30))) < 0.3


def test_agreement_separates_a_model_that_sees_differently():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    X = centres[rng.integers(0, 6, 300)] + 0.3 * rng.normal(size=(300, 16))
    same = reduce_embeddings(
        X.astype(np.float32), ReduceSettings(k=10, seed=0, min_cluster_size=10)
    ).knn_idx
    shuffled = reduce_embeddings(
        rng.normal(size=(300, 16)).astype(np.float32),
        ReduceSettings(k=10, seed=0, min_cluster_size=10),
    ).knn_idx
    scores = agreement({"a": same, "b": same.copy(), "noise": shuffled})
    assert scores["a"].mean() > 0.45 and scores["noise"].mean() < 0.1
    # a and b agree perfectly with each other, not at all with noise: (1 + ~0) / 2
    assert np.allclose(scores["a"], scores["b"])


def test_compare_models_on_reduced_files(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 24))
    lab = rng.integers(0, 4, 240)
    X = (centres[lab] + 0.2 * rng.normal(size=(240, 24))).astype(np.float32)
    ids = [f"i{i}" for i in range(240)]
    paths, emb = {}, {}
    for name, data, order in (
        ("a", X, np.arange(240)),
        (
            "rot",
            X @ np.linalg.qr(rng.normal(size=(24, 24)))[0].astype(np.float32),
            np.arange(240)[::-1],
        ),
    ):
        r = reduce_embeddings(data[order], ReduceSettings(k=10, seed=0, min_cluster_size=20))
        paths[name] = tmp_path / f"{name}.parquet"
        write_parquet(reduced_table([ids[i] for i in order], r, name), paths[name])
        emb[name] = tmp_path / f"{name}-emb.parquet"
        write_parquet(embedding_table([ids[i] for i in order], data[order]), emb[name])
    result = compare_models(paths, emb, trust={"a": 0.99})
    pair, per_model = result.pairs, result.models
    row = pair.iloc[0]
    # a rotation changes nothing cosine can see: same neighbours, CKA 1, same clusters
    assert row["jaccard_k"] > 0.95 and row["cka"] == pytest.approx(1.0, abs=1e-6)
    assert row["ari"] > 0.9 and row["nmi"] > 0.9
    assert per_model.set_index("model").at["a", "trustworthiness"] == 0.99
    assert per_model["mean_agreement"].min() > 0.95
    for metric, name in (("jaccard_k", "jaccard"), ("cka", "cka"), ("ari", "ari")):
        # every number has its interval around it
        assert row[f"{name}_low"] - 1e-9 <= row[metric] <= row[f"{name}_high"] + 1e-9
    # the same clusters: each of a's is held together by rot (Jaccard ~1), and back
    assert (result.clusters["jaccard"] > 0.9).all()
    assert set(result.clusters["model"]) == {"a", "rot"}
    # neighbour ids follow the image ids, not the row order of each file
    t = pq.read_table(paths["rot"])
    nb, rows = aligned_neighbours(t, pd.Index(ids))
    assert (nb[:, 0] == np.arange(240)).all() and (rows == np.arange(240)[::-1]).all()


def test_agreement_curve_sizes_and_reference_values():
    from cxratlas.analysis.disagreement import agreement_curve, curve_sizes

    assert curve_sizes(300, 20_000) == [75, 150, 300]
    assert curve_sizes(100_000, 20_000) == [1000, 2000, 5000, 10_000, 20_000]
    assert curve_sizes(3500, 20_000) == [1000, 2000, 3500]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 16)).astype(np.float32)
    R = np.linalg.qr(rng.normal(size=(16, 16)))[0].astype(np.float32)  # a rotation
    curve = agreement_curve({"a": X, "rot": X @ R, "noise": rng.normal(size=(400, 16))},
                            k=10, cap=20_000, seed=0)  # fmt: skip
    same = curve[(curve.model_a == "a") & (curve.model_b == "rot")]
    # cosine kNN and linear CKA are invariant to rotation: exactly the same neighbourhoods
    assert np.allclose(same["mutual_knn_jaccard"], 1.0) and np.allclose(same["cka"], 1.0)
    other = curve[curve.model_b == "noise"]
    assert (other["mutual_knn_jaccard"] < 0.15).all() and len(curve) == 9


def test_weighted_ari_equals_the_ari_of_copied_rows():
    """A resample's weights count rows: ARI over the weighted contingency table equals
    scikit-learn's ARI over the rows written out that many times."""
    from sklearn.metrics import adjusted_rand_score

    from cxratlas.analysis.compare import weighted_ari

    rng = np.random.default_rng(3)
    a, b = rng.integers(-1, 4, 80), rng.integers(0, 3, 80)
    w = rng.integers(0, 3, (4, 80))
    got = weighted_ari(a, b, w)
    want = [adjusted_rand_score(np.repeat(a, row), np.repeat(b, row)) for row in w]
    assert got == pytest.approx(want, abs=1e-12)


def test_cka_interval_is_tight_for_one_structure_and_wide_for_little_data():
    """The jackknife interval holds the value, narrows with more images, and equals the
    kernel-form CKA at its centre."""
    from cxratlas.analysis.compare import cka_interval

    rng = np.random.default_rng(4)
    X = rng.normal(size=(2000, 12))
    Y = X[:, :6] @ rng.normal(size=(6, 8)) + 1.0 * rng.normal(size=(2000, 8))
    value, low, high = cka_interval(X, Y, np.arange(2000) // 2)
    assert value == pytest.approx(linear_cka(X, Y)) and low < value < high
    _, small_low, small_high = cka_interval(X[:100], Y[:100], np.arange(100))
    assert (small_high - small_low) > 2 * (high - low)


def test_a_cluster_only_one_model_holds_together_has_no_counterpart():
    """Model a splits a group that b keeps in one cluster with another: a's cluster 2 is found
    in b only at Jaccard 0.5, and b's merged cluster has no counterpart above it in a."""
    from cxratlas.analysis.compare import cluster_correspondence

    a = np.repeat([0, 1, 2], 50)
    b = np.repeat([0, 1, 1], 50)
    table = cluster_correspondence({"a": a, "b": b}).set_index(["model", "cluster"])
    assert table.at[("a", 0), "jaccard"] == 1.0
    assert table.at[("a", 2), "jaccard"] == pytest.approx(0.5)
    assert table.at[("b", 1), "jaccard"] == pytest.approx(0.5)
