"""Probes and enrichment on planted truth; patient-level folds never split a patient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxratlas.analysis.enrichment import describe_groups, enrichment, model_groups
from cxratlas.analysis.metrics import auroc, macro_auroc, mae
from cxratlas.analysis.probes import (
    LabelPolicy,
    finding_labels,
    patient_bootstrap_ci,
    patient_folds,
    probe_auroc,
    resample_weights,
)


def _patients(n_patients=120, per=3, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_patients), per)
    # the label is a property of the patient, so leaking a patient would inflate AUROC
    y = np.repeat(rng.random(n_patients) < 0.4, per).astype(int)
    return rng, groups, y


def test_patient_folds_keep_each_patient_on_one_side():
    _, groups, y = _patients()
    fold = patient_folds(groups, y, 5, seed=0)
    per_patient = pd.Series(fold).groupby(groups).nunique()
    assert (per_patient == 1).all() and set(fold) == set(range(5))
    rates = pd.Series(y).groupby(fold).mean()
    assert rates.max() - rates.min() < 0.15  # positives spread over the folds


def test_probe_finds_a_planted_signal_and_not_a_shuffled_one():
    rng, groups, y = _patients()
    X = rng.normal(size=(len(y), 32))
    X[:, 3] += 1.5 * y  # the finding is linearly encoded in one direction
    hit = probe_auroc(X, y, groups, folds=5, bootstrap=300, seed=0)
    assert hit["auroc"] > 0.8 and hit["ci_low"] < hit["auroc"] < hit["ci_high"]
    shuffled = np.repeat(rng.permutation(y[::3]), 3)
    null = probe_auroc(X, shuffled, groups, folds=5, bootstrap=300, seed=0)
    assert abs(null["auroc"] - 0.5) < 0.12 and null["ci_low"] < 0.5 < null["ci_high"]


def _ci_one_resample_at_a_time(y, score, groups, bootstrap, seed, metric):
    """The bootstrap as written out: draw patients, gather their rows, score the copy."""
    rng = np.random.default_rng(seed)
    patients, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == p) for p in range(len(patients))]
    boots = []
    for _ in range(bootstrap):
        pick = np.concatenate([members[p] for p in rng.integers(0, len(patients), len(patients))])
        value = metric(y[pick], score[pick])
        if not np.isnan(value):
            boots.append(value)
    return tuple(np.percentile(boots, [2.5, 97.5]))


@pytest.mark.parametrize("metric", [auroc, macro_auroc, mae])
def test_bootstrap_ci_scores_resamples_as_weights_and_equals_copying_rows(metric):
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 70, 200)  # patients with 0 to 8 images
    if metric is auroc:  # rare positives: some resamples have none and are left out
        y = (rng.random(200) < 0.04).astype(int)
        score = np.round(rng.random(200) + y, 1)  # ties, which count half
    elif metric is macro_auroc:
        y = rng.integers(0, 4, 200)
        y[y == 3] = rng.choice([0, 3], (y == 3).sum(), p=[0.9, 0.1])  # a class often absent
        score = np.round(rng.dirichlet(np.ones(4), 200), 2)
    else:
        y, score = rng.normal(60, 15, 200), rng.normal(60, 5, 200)
    blocks = list(resample_weights(groups, 300, 1, cells=200 * 70))
    assert len(blocks) > 1  # smaller blocks draw the same resamples
    assert (np.concatenate(blocks) == np.concatenate(list(resample_weights(groups, 300, 1)))).all()
    fast = patient_bootstrap_ci(y, score, groups, 300, 1, metric)
    slow = _ci_one_resample_at_a_time(y, score, groups, 300, 1, metric)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert fast[0] < metric(y, score) < fast[1]


def test_patient_memorisation_does_not_leak():
    """Embeddings that identify the patient but carry no finding: with patient-level folds the
    probe stays at chance (random image-level folds would score far above it)."""
    rng, groups, y = _patients(per=4)
    X = rng.normal(size=(120, 48))[groups] + 0.05 * rng.normal(size=(len(y), 48))
    result = probe_auroc(X, y, groups, folds=5, bootstrap=0, seed=0)
    assert abs(result["auroc"] - 0.5) < 0.15


def test_uncertain_and_blank_labels_policy():
    m = pd.DataFrame({"pneumonia": pd.array([1, 0, -1, None], "Int8")}, index=list("abcd"))
    assert finding_labels(m, "pneumonia").to_dict() == {"a": 1, "b": 0}
    positive, negative = LabelPolicy("positive"), LabelPolicy("negative")
    assert finding_labels(m, "pneumonia", positive).to_dict() == {"a": 1, "b": 0, "c": 1}
    assert finding_labels(m, "pneumonia", negative).to_dict() == {"a": 1, "b": 0, "c": 0}
    blank_absent = LabelPolicy("ignore", "negative")  # not mentioned = absent; -1 still dropped
    assert finding_labels(m, "pneumonia", blank_absent).to_dict() == {"a": 1, "b": 0, "d": 0}


def test_a_finding_of_positives_and_blanks_is_probed_when_blanks_read_as_negatives(tmp_path):
    """CheXpert's "No Finding" is 1 or blank, never 0: skipped by default with a reason that
    names the setting, probed (and separable where the embedding holds it) with
    `missing: negative`; the skipped row's counts are the labelled images."""
    from cxratlas.analysis.probes import ProbeSettings, run_probes
    from cxratlas.io import ManifestColumns, embedding_table, write_manifest, write_parquet

    rng = np.random.default_rng(0)
    n = 120
    truth = rng.random(n) < 0.4
    X = rng.normal(size=(n, 8)).astype(np.float32)
    X[truth, 0] += 3.0
    ids = [f"i{k}" for k in range(n)]
    labels = pd.array(np.where(truth, 1, pd.NA), dtype="Int8")  # positives, else blank
    manifest = pd.DataFrame({"image_id": ids, "patient_id": ids, "no_finding": labels})
    write_manifest(ManifestColumns(findings=("no_finding",)).tag(manifest),
                   tmp_path / "manifest.parquet")  # fmt: skip
    write_parquet(embedding_table(ids, X), tmp_path / "m.parquet")
    run = lambda policy: run_probes({"m": str(tmp_path / "m.parquet")},  # noqa: E731
                                    str(tmp_path / "manifest.parquet"), ["no_finding"],
                                    ProbeSettings(bootstrap=50, labels=policy)).table  # fmt: skip
    skipped = run(LabelPolicy()).iloc[0]
    assert skipped["status"] == "skipped" and skipped["n"] == truth.sum()
    assert f"its {n - truth.sum()} blank label(s) are unknown" in skipped["reason"]
    assert "analysis.probes.missing: negative" in skipped["reason"]
    scored = run(LabelPolicy("ignore", "negative")).iloc[0]
    assert scored["status"] == "scored" and scored["n"] == n and scored["auroc"] > 0.9


def test_enrichment_finds_the_planted_subgroup():
    rng = np.random.default_rng(0)
    cluster = rng.integers(0, 4, 800)
    pneumonia = np.where(cluster == 2, rng.random(800) < 0.6, rng.random(800) < 0.1).astype(int)
    devices = (rng.random(800) < 0.3).astype(int)  # independent of the clusters
    devices[:40] = -1  # uncertain: counted neither way
    reduced = pd.DataFrame({"image_id": range(800), "cluster": cluster, "outlier": rng.random(800)})
    groups = model_groups(reduced, 0.95)
    assert list(groups)[:4] == [f"c{c}" for c in pd.Series(cluster).value_counts().index]
    assert groups["outliers"].sum() == 40
    labels = pd.DataFrame({"pneumonia": pneumonia, "support_devices": devices})
    table = enrichment(groups, labels).set_index(["group", "finding"])
    hit = table.loc[("c2", "pneumonia")]
    assert hit["odds_ratio"] > 8 and hit["p_adjusted"] < 1e-10
    assert abs(hit["prevalence_in"] - 0.6) < 0.08 and abs(hit["prevalence_out"] - 0.1) < 0.04
    others = table.xs("support_devices", level="finding")
    assert (others["p_adjusted"] > 0.05).all()  # nothing planted, nothing found
    known = (devices >= 0) & groups["c0"]
    assert table.loc[("c0", "support_devices"), "prevalence_in"] == pytest.approx(
        devices[known].mean()
    )


def test_group_descriptions_name_the_dominant_values():
    meta = pd.DataFrame(
        {
            "view_position": ["PA"] * 8 + ["LATERAL"] * 2,
            "age": [25, 30, 35, 70, 72, 74, 80, 85, 50, 51],
        }
    )
    mask = np.array([True] * 5 + [False] * 5)
    d = describe_groups({"c0": mask, "c1": ~mask}, meta).set_index("group")
    assert d.at["c0", "top_view_position"] == "PA" and d.at["c0", "top_view_position_share"] == 1
    assert d.at["c1", "top_view_position"] == "PA" and d.at["c1", "top_view_position_share"] == 0.6
    assert d.at["c0", "top_age_band"] == "20-39" and d.at["c0", "top_age_band_share"] == 0.6


def test_eda_counts_match_the_manifest(demo):
    from cxratlas.analysis.eda import eda_table
    from cxratlas.io import ManifestColumns

    _, df = demo
    m = df.copy()
    m["cardiomegaly"] = pd.array([1, 0, -1, None] * (len(m) // 4), "Int8")
    table = eda_table(ManifestColumns(findings=("cardiomegaly",)).tag(m))
    get = lambda s: table[table["section"] == s].set_index("key")["count"]  # noqa: E731
    assert get("images")["total"] == len(m)
    assert get("view_position").to_dict() == m["view_position"].value_counts().to_dict()
    assert get("label:cardiomegaly").to_dict() == {
        "positive": 30, "negative": 30, "uncertain": 30, "missing": 30}  # fmt: skip
    per_patient = m.groupby("patient_id").size().value_counts()
    assert get("images_per_patient").sum() == m["patient_id"].nunique()
    assert get("images_per_patient")["1"] == per_patient.get(1, 0)
    assert get("age").sum() == m["age"].notna().sum()


def test_flip_changes_exactly_the_asked_fraction():
    from cxratlas.analysis.label_noise import flip

    y = np.array([0, 1] * 50)
    flipped = flip(y, 0.2, seed=0)
    assert (flipped != y).sum() == 20 and set(flipped) <= {0, 1}
    assert (flip(y, 0.0, 0) == y).all()


def test_a_probe_with_too_few_positives_is_a_row_that_says_why_and_a_figure(tmp_path):
    from PIL import Image

    from cxratlas.analysis.plots import probe_plot
    from cxratlas.analysis.probes import run_probes
    from cxratlas.io import ManifestColumns, embedding_table, write_manifest, write_parquet

    ids = [f"i{i}" for i in range(30)]
    write_parquet(
        embedding_table(ids, np.random.default_rng(0).normal(size=(30, 4))), tmp_path / "e.parquet"
    )
    manifest = pd.DataFrame({"image_id": ids, "pneumonia": pd.array([1] * 3 + [0] * 27, "Int8")})
    write_manifest(ManifestColumns(findings=("pneumonia",)).tag(manifest), tmp_path / "m.parquet")
    run = run_probes({"m": str(tmp_path / "e.parquet")}, str(tmp_path / "m.parquet"))
    table = run.table
    assert run.scores.empty  # a skipped probe has no scores
    row = table.set_index(["finding", "model"]).loc[("pneumonia", "m")]
    assert row["status"] == "skipped" and np.isnan(row["auroc"])
    assert (row["n"], row["positives"], row["patients"]) == (30, 3, 30)
    assert "3 positive and 27 negative" in row["reason"] and "min_positives" in row["reason"]
    probe_plot(table, str(tmp_path / "p.png"))
    assert Image.open(tmp_path / "p.png").size[0] > 100


def test_cluster_names_say_what_a_planted_cluster_is_made_of():
    """c0: every image lateral, 80% site B (B is 30% of the sample), effusion 3x as common as
    outside; c1: a mix of everything; noise keeps its name."""
    from cxratlas.analysis.naming import cluster_names
    from cxratlas.atlas.labels import label_column

    n = 200
    cluster = np.r_[[0] * 50, [1] * 140, [-1] * 10]
    view = np.r_[["LATERAL"] * 50, np.tile(["PA", "AP"], 75)]
    site = np.r_[["B"] * 40, ["A"] * 10, ["B"] * 20, ["A"] * 130]
    effusion = np.r_[[1] * 30, [0] * 20, np.tile([1, 0, 0, 0, 0, 0, 0], 20), [0] * 10]
    meta = pd.DataFrame({"view_position": view, "site": site})
    groups = model_groups(pd.DataFrame({"cluster": cluster, "outlier": np.zeros(n)}))
    table = enrichment(groups, pd.DataFrame({"effusion": pd.array(effusion, "Int8")}))
    names, labels = cluster_names(groups, meta, table, attributes=("site",))
    inside, outside = 30 / 50, 20 / 150
    assert names["c0"] == f"c0 · LATERAL · site B 80% · effusion ×{inside / outside:.1f}"
    assert names["c1"] == "c1 · mixed" and names["noise"] == "noise"
    # the atlas's short label: the same parts, no shares or ratios
    assert labels["c0"] == "c0 · LATERAL · site B · effusion" and labels["c1"] == "c1 · mixed"
    assert label_column(cluster[[0, 60, 199]], labels) == [labels["c0"], labels["c1"], "noise"]


def _scores(y, patients, **models):
    """The probes' scores table for planted per-model scores of the same images."""
    ids = [f"i{i}" for i in range(len(y))]
    frames = [pd.DataFrame({"finding": "f", "model": m, "image_id": ids, "label": y, "score": s,
                            "fold": 0}) for m, s in models.items()]  # fmt: skip
    groups = pd.Series(patients, index=ids).astype(str)
    probes = pd.DataFrame([{"finding": "f", "model": m, "ci_low": 0.6} for m in models])
    return pd.concat(frames, ignore_index=True), probes, groups


def test_paired_differences_separate_a_planted_gap_and_not_two_equal_models():
    """a sees the finding clearly, b faintly, a2 as clearly as a with its own noise: a beats b
    (both orders of the pair give a as model_a), a and a2 are not told apart."""
    from cxratlas.analysis.probe_differences import paired_differences

    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, n)
    patients = np.arange(n) // 2
    scores, probes, groups = _scores(y, patients, b=0.4 * y + rng.normal(size=n),
                                     a=1.5 * y + rng.normal(size=n),
                                     a2=1.5 * y + rng.normal(size=n))  # fmt: skip
    table = paired_differences(scores, probes, groups, bootstrap=500, seed=0)
    pair = table.set_index(["model_a", "model_b"])
    ab = pair.loc[("a", "b")]
    assert ab["difference"] == pytest.approx(auroc(y, scores.score[scores.model == "a"].to_numpy())
                                             - auroc(y, scores.score[scores.model == "b"]
                                                     .to_numpy()))  # fmt: skip
    assert ab["separated"] and ab["ci_low"] > 0.1 and ab["p_adjusted"] < 0.01
    same = table[table.model_a.isin(["a", "a2"]) & table.model_b.isin(["a", "a2"])].iloc[0]
    assert not same["separated"] and same["ci_low"] < 0 < same["ci_high"]
    assert (table["p_adjusted"] >= table["p_value"]).all()


def test_paired_differences_claim_nothing_on_shuffled_labels_or_below_chance():
    """The null: labels shuffled after the models scored them; and a probe at chance is never
    the better model of a claimed difference, however the bootstrap falls."""
    from cxratlas.analysis.probe_differences import paired_differences

    rng = np.random.default_rng(1)
    n = 400
    y = rng.integers(0, 2, n)
    a, b = 1.5 * y + rng.normal(size=n), 0.3 * y + rng.normal(size=n)
    shuffled = rng.permutation(y)
    scores, probes, groups = _scores(shuffled, np.arange(n), a=a, b=b)
    assert not paired_differences(scores, probes, groups, 300, 0)["separated"].any()
    scores, probes, groups = _scores(y, np.arange(n), a=a, b=b)
    probes["ci_low"] = 0.45  # both probes' CIs reach chance
    table = paired_differences(scores, probes, groups, 300, 0)
    assert table["p_adjusted"].iloc[0] < 0.01 and not table["separated"].any()


def test_paired_bootstrap_is_narrower_than_two_separate_cis_when_errors_are_shared():
    """Two models that fail on the same hard images: their difference varies far less across
    resamples than either AUROC does, which two overlapping CIs would hide."""
    from cxratlas.analysis.probe_differences import paired_differences, resampled_aurocs

    rng = np.random.default_rng(2)
    n = 500
    y = rng.integers(0, 2, n)
    hard = rng.normal(size=n) * 1.2
    a, b = 1.2 * y + hard + 0.2 * rng.normal(size=n), y + hard + 0.2 * rng.normal(size=n)
    boots = resampled_aurocs(y, {"a": a, "b": b}, np.arange(n), 400, 0)
    assert np.std(boots["a"] - boots["b"]) < 0.5 * np.std(boots["a"])
    scores, probes, groups = _scores(y, np.arange(n), a=a, b=b)
    row = paired_differences(scores, probes, groups, 400, 0).iloc[0]
    assert row["model_a"] == "a" and row["separated"]


def test_attenuation_matches_scores_held_fixed_against_flipped_labels():
    """Fixed scores scored against labels with a fraction flipped at random fall to the
    attenuation formula's value (averaged over draws), and nothing flipped changes nothing."""
    from cxratlas.analysis.label_noise import attenuated, flip

    rng = np.random.default_rng(5)
    y = (rng.random(4000) < 0.3).astype(int)
    score = 1.2 * y + rng.normal(size=4000)
    clean = auroc(y, score)
    for fraction in (0.1, 0.3):
        measured = np.mean([auroc(flip(y, fraction, s), score) for s in range(20)])
        assert measured == pytest.approx(attenuated(clean, fraction, y.mean()), abs=0.01)
    assert attenuated(clean, 0.0, 0.3) == pytest.approx(clean)
    assert attenuated(0.9, 0.5, 0.3) == pytest.approx(0.5)  # half flipped: labels say nothing


def test_the_probe_table_marks_a_best_model_only_above_chance_and_separated():
    """Bold: the best AUROC of a finding whose CI clears 0.5; a dagger where the paired
    bootstrap separates it from every other model; probes at chance claim no best."""
    from cxratlas.analysis.summary import probe_table

    probes = pd.DataFrame({
        "finding": ["f", "f", "g", "g"], "model": ["a", "b", "a", "b"],
        "auroc": [0.9, 0.8, 0.52, 0.49], "ci_low": [0.85, 0.74, 0.40, 0.37],
        "ci_high": [0.95, 0.86, 0.64, 0.61], "status": "scored",
    })  # fmt: skip
    diffs = pd.DataFrame({"finding": ["f", "g"], "model_a": ["a", "a"], "model_b": ["b", "b"],
                          "separated": [True, False]})  # fmt: skip
    rows = {r[0]: r[1:] for r in probe_table(probes, diffs, ["a", "b"])[1:]}
    assert rows["f"] == ["**0.90 (0.85-0.95)** †", "0.80 (0.74-0.86)"]
    assert rows["g"] == ["0.52 (0.40-0.64)", "0.49 (0.37-0.61)"]
    diffs["separated"] = False
    assert probe_table(probes, diffs, ["a", "b"])[1][1] == "**0.90 (0.85-0.95)**"


def test_what_only_a_model_sees_leaves_out_its_background_cluster(tmp_path):
    """A model's own cluster that no other keeps together is named with a whole count; one
    holding most of its images (the map's background, "mixed") is not something it sees."""
    from types import SimpleNamespace

    from cxratlas.analysis.summary import what_only_it_sees

    pd.DataFrame({"separated": [False], "model_a": ["a"], "model_b": ["b"], "finding": ["x"],
                  "auroc_a": [0.7], "auroc_b": [0.6], "ci_low": [-0.1],
                  "ci_high": [0.2]}).to_parquet(tmp_path / "d.parquet")  # fmt: skip
    pd.DataFrame({"model": ["a"] * 3, "cluster": [0, 1, 2], "size": [10.0, 202.0, 38.0],
                  "jaccard": [0.2, 0.41, 0.9]}).to_parquet(tmp_path / "c.parquet")  # fmt: skip
    pd.DataFrame({"metric": ["auroc"], "attribute": ["sex"], "model": ["a"], "value": [0.6],
                  "ci_low": [0.5], "ci_high": [0.7]}).to_parquet(tmp_path / "a.pq")  # fmt: skip
    i = SimpleNamespace(differences=tmp_path / "d.parquet", compare_clusters=tmp_path / "c.parquet",
                        attributes=tmp_path / "a.pq")  # fmt: skip
    s = SimpleNamespace(names={"a": {"c0": "c0 · LATERAL", "c1": "c1 · mixed"}})
    text = what_only_it_sees("a", i, s)
    assert "holds 'c0 · LATERAL' (10 images) together" in text
    assert "mixed" not in text and "202" not in text and "c2" not in text
