"""The bias and shortcut audit against hand-computed cases, reference implementations, planted
truth and shuffled-label controls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxratlas.analysis.attribute_probes import attribute_probes
from cxratlas.analysis.metrics import auroc, macro_auroc, mae
from cxratlas.analysis.probes import ProbeSettings
from cxratlas.analysis.subgroup_performance import (
    FindingScores,
    largest_gaps,
    metadata_auroc,
    subgroup_auroc,
    within_site_auroc,
)
from cxratlas.subgroups import age_band, resolve_site, subgroup_frame

FAST = ProbeSettings(folds=5, bootstrap=200, min_positives=10, seed=0)


def test_metrics_equal_the_reference_implementations():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # rounded: many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.4]) == pytest.approx(0.875)  # by hand: 3.5 / 4
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))
    k = rng.integers(0, 3, 300)
    p = rng.dirichlet(np.ones(3), 300) + np.eye(3)[k] * 0.3
    p /= p.sum(1, keepdims=True)
    assert macro_auroc(k, p) == pytest.approx(roc_auc_score(k, p, multi_class="ovr"), abs=1e-12)
    assert mae([50, 60, 70], [55, 60, 60]) == pytest.approx(5.0)


def test_age_bands_and_site_choice():
    assert age_band(pd.Series([5, 20, 39.9, 85, None])).fillna("?").tolist() == [
        "<20", "20-39", "20-39", "80+", "?"]  # fmt: skip
    meta = pd.DataFrame({"dataset": ["a"] * 4, "manufacturer": ["x", "y", "x", ""],
                         "age": [30, 50, 70, None], "race": ["w", "b", "w", "b"]})  # fmt: skip
    groups = subgroup_frame(meta, ("race",))
    assert list(groups.columns) == ["age_band", "manufacturer", "dataset", "race"]
    assert groups["manufacturer"].isna().tolist() == [False, False, False, True]
    assert resolve_site(groups, "auto")[0] == "manufacturer"  # dataset has one value
    assert resolve_site(groups, "race")[0] == "race" and resolve_site(groups, None)[0] is None
    with pytest.raises(KeyError, match="'hospital' is not a subgroup column"):
        resolve_site(groups, "hospital")


def _patients(n: int) -> pd.Series:
    return pd.Series([f"p{i // 2}" for i in range(n)], index=[f"i{i}" for i in range(n)])


def test_attribute_probes_find_what_is_planted_and_the_control_does_not():
    rng = np.random.default_rng(1)
    n = 400
    ids = [f"i{i}" for i in range(n)]
    sex = rng.choice(["F", "M"], n)
    age = rng.uniform(20, 90, n)
    X = rng.normal(size=(n, 16))
    X[:, 0] += 3 * (sex == "F")  # sex is encoded
    X[:, 1] += age / 10  # so is age, linearly
    groups = pd.DataFrame({"sex": sex, "site": rng.choice(["a", "b", "c"], n)}, index=ids)
    table = attribute_probes({"m": (ids, X, {})}, groups, _patients(n), FAST,
                             pd.Series(age, index=ids)).set_index("attribute")  # fmt: skip
    assert table.at["sex", "value"] > 0.9 and abs(table.at["sex", "control"] - 0.5) < 0.1
    assert table.at["sex", "ci_low"] < table.at["sex", "value"] < table.at["sex", "ci_high"]
    assert (
        table.at["site", "metric"] == "macro_auroc" and abs(table.at["site", "value"] - 0.5) < 0.1
    )
    assert table.at["age", "metric"] == "mae_years"
    assert table.at["age", "value"] < 13 < table.at["age", "control"]  # chance MAE ~17.5


def _scores(y, score, ids, X=None) -> FindingScores:
    g = np.array([f"p{i // 2}" for i in range(len(y))])
    X = X if X is not None else np.zeros((len(y), 1))
    return FindingScores("f", "m", pd.Index(ids), np.asarray(y), g, np.asarray(score, float), X)


def test_subgroup_auroc_and_gaps_on_a_hand_built_case():
    rng = np.random.default_rng(2)
    n = 200
    ids = [f"i{i}" for i in range(n)]
    y = np.tile([0, 1], n // 2)
    view = np.where(np.arange(n) < n // 2, "PA", "AP")
    score = np.where(view == "PA", y + 0.01 * rng.random(n), rng.random(n))  # perfect on PA only
    groups = pd.DataFrame({"view_position": view}, index=ids)
    rows = pd.DataFrame(subgroup_auroc(_scores(y, score, ids), groups, 10, FAST))
    by = rows.set_index("group")
    assert by.at["PA", "auroc"] == 1.0 and abs(by.at["AP", "auroc"] - 0.5) < 0.15
    assert by.at["PA", "n"] == 100 and by.at["PA", "positives"] == 50
    gaps = largest_gaps(rows)
    assert gaps.iloc[0]["best_group"] == "PA" and gaps.iloc[0]["worst_group"] == "AP"
    assert gaps.iloc[0]["separated"] and gaps.iloc[0]["gap"] > 0.3
    few = pd.DataFrame(subgroup_auroc(_scores(y, score, ids), groups, 60, FAST))
    assert set(few["status"]) == {"skipped"} and few["auroc"].isna().all()  # too few per group
    assert "50 positive and 50 negative" in few["reason"].iloc[0]
    assert "min_group" in few["reason"].iloc[0] and largest_gaps(few).empty


def test_confounding_separates_a_site_shortcut_from_a_real_signal():
    """A finding that follows the site is predicted pooled but not within a site, and the
    metadata alone predict it; a finding the embeddings carry holds within each site."""
    rng = np.random.default_rng(3)
    n = 600
    ids = [f"i{i}" for i in range(n)]
    site = rng.choice(["a", "b"], n)
    shortcut = (rng.random(n) < np.where(site == "a", 0.7, 0.1)).astype(int)
    real = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 8))
    X[:, 0] += 3 * (site == "a")  # the embeddings see the site
    X[:, 1] += 2 * real  # and the real finding
    groups = pd.DataFrame({"site": site}, index=ids)
    patients = _patients(n)
    out = {}
    for name, y in (("shortcut", shortcut), ("real", real)):
        from cxratlas.analysis.subgroup_performance import finding_scores

        labels = pd.Series(y, index=ids)
        f = finding_scores(name, "m", X, labels, patients, FAST)
        within, scored, sites = within_site_auroc(f, groups["site"], 10, FAST)
        meta = metadata_auroc(labels, groups, patients, FAST)[0]
        out[name] = (f.pooled, within, scored, meta, sites)
    pooled, within, scored, meta, sites = out["shortcut"]
    assert pooled > 0.75 and within < 0.6 and scored < 0.6 and meta > pooled - 0.05
    assert sites == 2
    pooled, within, scored, meta, sites = out["real"]
    assert pooled > 0.8 and within > pooled - 0.05 and scored > pooled - 0.05
    assert abs(meta - 0.5) < 0.1


def test_unknown_subgroup_values_are_left_out_not_a_group():
    ids = [f"i{i}" for i in range(80)]
    y = np.tile([0, 1], 40)
    sex = pd.array(["F"] * 30 + [pd.NA] * 20 + ["M"] * 30, dtype="string")
    groups = pd.DataFrame({"sex": sex}, index=ids)
    rows = subgroup_auroc(_scores(y, y + 0.0, ids), groups, 10, FAST)
    assert sorted(r["group"] for r in rows) == ["F", "M"] and {r["n"] for r in rows} == {30}


def test_flags_need_a_probe_above_chance_and_say_why():
    from cxratlas.analysis.shortcuts import ShortcutSettings, _flag

    ids = [f"i{i}" for i in range(4)]
    f = _scores([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], ids)  # pooled AUROC 1.0
    s = ShortcutSettings()
    row = _flag(f, (0.9, 1.0), ("site", 0.7, 0.6, 2), (0.6, 0.52, 0.7), s)
    assert row["flagged"] and row["reason"].startswith("within-site AUROC 0.70 is 0.30 below")
    # retrained probes lose, the pooled probe ranked within sites does not: sample size, no flag
    row = _flag(f, (0.9, 1.0), ("site", 0.7, 0.99, 2), (0.6, 0.52, 0.7), s)
    assert not row["flagged"]
    row = _flag(f, (0.9, 1.0), ("site", 0.97, 0.97, 2), (0.96, 0.9, 1.0), s)
    assert row["flagged"] and row["reason"] == "the metadata alone reach AUROC 0.96 (pooled 1.00)"
    row = _flag(f, (0.9, 1.0), ("site", 0.97, 0.97, 2), (0.96, 0.45, 1.0), s)  # metadata at chance
    assert not row["flagged"] and row["reason"] == ""
    row = _flag(f, (0.4, 1.0), ("site", 0.5, 0.5, 2), (0.99, 0.9, 1.0), s)  # probe at chance
    assert not row["flagged"] and "not above chance" in row["reason"]


def _write_run(tmp_path, manifest, X, attributes=(), findings=("pneumonia",)):
    from cxratlas.io import ManifestColumns, embedding_table, write_manifest, write_parquet

    ids = manifest["image_id"].tolist()
    write_parquet(embedding_table(ids, X, {"model": "m"}), tmp_path / "m.parquet")
    tagged = ManifestColumns(findings=findings, attributes=attributes).tag(manifest)
    write_manifest(tagged, tmp_path / "manifest.parquet")
    return {"m": str(tmp_path / "m.parquet")}, str(tmp_path / "manifest.parquet")


def test_the_audit_runs_on_a_small_odd_archive(tmp_path):
    """40 images, one model, no patient ids, no age, a one-valued site: tables, no crash."""
    from cxratlas.analysis.shortcuts import ShortcutSettings, run_audit

    rng = np.random.default_rng(4)
    y = np.tile([0, 1], 20)
    manifest = pd.DataFrame({"image_id": [f"i{i}" for i in range(40)],
                             "pneumonia": pd.array(y, "Int8"),
                             "site": ["a"] * 40, "sex": rng.choice(["F", "M"], 40)})  # fmt: skip
    X = rng.normal(size=(40, 8)) + y[:, None]
    emb, man = _write_run(tmp_path, manifest, X, ("site",))
    audit = run_audit(emb, man, None, FAST, ShortcutSettings())
    assert audit.site is None and "two values or more" in audit.notes[0]
    row = audit.confounding.iloc[0]
    assert row["finding"] == "pneumonia" and np.isnan(row["within_site_auroc"])
    assert set(audit.attributes["attribute"]) <= {"sex"}
    with pytest.raises(KeyError, match=r"\['covid'\] are not manifest columns"):
        run_audit(emb, man, ["covid"], FAST, ShortcutSettings())


def test_a_site_whose_positives_are_one_patient_does_not_crash(tmp_path):
    """One ICU patient with 12 daily films holds every positive of site b: the folds are
    bounded by patients per class, so no training split lacks a class."""
    from cxratlas.analysis.shortcuts import ShortcutSettings, run_audit

    rng = np.random.default_rng(5)
    n = 120
    site = np.array(["a"] * 60 + ["b"] * 60)
    y = np.r_[np.tile([0, 1], 30), [1] * 12 + [0] * 48]
    patient = [f"p{i}" for i in range(60)] + ["icu"] * 12 + [f"q{i}" for i in range(48)]
    manifest = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "patient_id": patient,
                             "pneumonia": pd.array(y, "Int8"), "site": site})  # fmt: skip
    emb, man = _write_run(tmp_path, manifest, rng.normal(size=(n, 8)) + y[:, None], ("site",))
    audit = run_audit(emb, man, None, FAST, ShortcutSettings(site="site"))
    assert len(audit.confounding) == 1 and audit.confounding["sites"].iloc[0] >= 1


def test_a_finding_too_rare_to_audit_is_a_row_with_its_counts_and_reason(tmp_path):
    """covid with 2 positives among 60 (as on 90 real images): a skipped row where its audit
    would be, never a silent gap; the scored finding beside it is audited as before."""
    from cxratlas.analysis.shortcuts import ShortcutSettings, run_audit

    rng = np.random.default_rng(6)
    y = np.tile([0, 1], 30)
    covid = np.r_[[1, 1], [0] * 58]
    manifest = pd.DataFrame({"image_id": [f"i{i}" for i in range(60)],
                             "pneumonia": pd.array(y, "Int8"), "covid": pd.array(covid, "Int8"),
                             "site": rng.choice(["a", "b"], 60)})  # fmt: skip
    X = rng.normal(size=(60, 8)) + y[:, None]
    emb, man = _write_run(tmp_path, manifest, X, ("site",), ("pneumonia", "covid"))
    table = run_audit(emb, man, None, FAST, ShortcutSettings()).confounding
    table = table.set_index("finding")
    assert table.at["pneumonia", "status"] == "scored"
    assert table.at["covid", "status"] == "skipped" and not table.at["covid", "flagged"]
    assert (table.at["covid", "n"], table.at["covid", "positives"]) == (60, 2)
    assert "2 positive and 58 negative" in table.at["covid", "reason"]
    assert np.isnan(table.at["covid", "pooled_auroc"])


def test_label_noise_on_a_named_finding_too_rare_to_flip_is_a_row_per_model(tmp_path):
    from cxratlas.analysis.label_noise import NoiseSettings, label_noise_sensitivity

    covid = np.r_[[1, 1], [0] * 58]
    manifest = pd.DataFrame({"image_id": [f"i{i}" for i in range(60)],
                             "covid": pd.array(covid, "Int8")})  # fmt: skip
    emb, man = _write_run(tmp_path, manifest, np.random.default_rng(7).normal(size=(60, 4)),
                          findings=("covid",))  # fmt: skip
    table, why = label_noise_sensitivity(emb, {"m": "unused"}, man,
                                         NoiseSettings("covid", (0, 0.1), probes=FAST))  # fmt: skip
    assert table[["model", "status"]].values.tolist() == [["m", "skipped"]]
    assert why == table["reason"].iloc[0] and why.startswith("covid: too few to score: 2 positive")
