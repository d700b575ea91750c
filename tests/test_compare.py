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
    pair, per_model = compare_models(paths, emb, trust={"a": 0.99})
    row = pair.iloc[0]
    # a rotation changes nothing cosine can see: same neighbours, CKA 1, same clusters
    assert row["jaccard_k"] > 0.95 and row["cka"] == pytest.approx(1.0, abs=1e-6)
    assert row["ari"] > 0.9 and row["nmi"] > 0.9
    assert per_model.set_index("model").at["a", "trustworthiness"] == 0.99
    assert per_model["mean_agreement"].min() > 0.95
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
