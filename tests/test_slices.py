"""Error slices on planted truth: a classifier right except on a hidden stratum is caught where
the stratum is visible in the embedding, errors at random give no slice, and every number
equals its definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from cxratlas.atlas.table import slice_columns
from cxratlas.slices.across import combine
from cxratlas.slices.leads import KIND, error_slice_leads
from cxratlas.slices.run import (
    AcrossSettings,
    Context,
    SliceSettings,
    Space,
    pca_space,
    slice_classifier,
)
from cxratlas.slices.score import Ranking, grouped_test, stratum_ranks
from cxratlas.slices.search import patient_halves

FINDINGS = ["effusion", "nodule"]


def world(n: int = 1600, seed: int = 0, visible: bool = True):
    """Embeddings in 8 clusters; the hidden stratum is cluster 3 (visible) or, with
    `visible=False`, as many images drawn at random (no model could see it). Two images a
    patient; a `site` attribute that the stratum's images mostly share."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 48)) * 1.5
    group = rng.integers(0, 8, n)
    X = (centres[group] + rng.normal(size=(n, 48))).astype(np.float32)
    stratum = group == 3 if visible else rng.permutation(group == 3)
    ids = np.array([f"img{i:05d}" for i in range(n)], dtype=object)
    meta = pd.DataFrame({"patient_id": [f"p{i // 2}" for i in range(n)],
                         "site": np.where(stratum & (rng.random(n) < 0.85), "B", "A"),
                         "sex": rng.choice(["F", "M"], n)},
                        index=pd.Index(ids, name="image_id"))  # fmt: skip
    for f in FINDINGS:
        meta[f] = pd.array((rng.random(n) < 0.3).astype(int), dtype="Int8")
    return ids, X, group, stratum, meta


def classifier(meta, stratum, kind: str, seed: int = 0) -> pd.DataFrame:
    """`planted`: right (scores apart by class) except on the stratum's positives, scored as
    negatives; `random`: errors at random (10 % of the positives scored as negatives)."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for f in FINDINGS:
        y = meta[f].to_numpy(int)
        score = np.where(y == 1, rng.normal(4, 1, len(y)), rng.normal(0, 1, len(y)))
        wrong = stratum & (y == 1) if kind == "planted" else (y == 1) & (rng.random(len(y)) < 0.1)
        score = np.where(wrong, rng.normal(0, 1, len(y)), score)
        rows.append(pd.DataFrame({"classifier": kind, "finding": f, "image_id": meta.index,
                                  "label": y.astype(np.int8), "score": score}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def run(pred, spaces: dict[str, tuple], meta, s: SliceSettings | None = None):
    """The (classifier, model) jobs and the job across them: (slices, members, isolation)."""
    s = s or SliceSettings()
    ctx = Context(pred["classifier"].iloc[0], meta, FINDINGS, ("site",), {})
    runs = [slice_classifier(ctx, Space(m, pd.Index(meta.index), pca_space(X, 16, 0), cluster,
                                        {}), pred, s)
            for m, (X, cluster) in spaces.items()]  # fmt: skip
    return combine([r.table for r in runs], [r.members for r in runs],
                   [r.findings for r in runs], AcrossSettings())  # fmt: skip


@pytest.fixture(scope="module")
def planted():
    ids, X, group, stratum, meta = world()
    noise = np.random.default_rng(9).normal(size=X.shape).astype(np.float32)
    no_map = np.full(len(ids), -1)  # clusters scored apart (test below): mixture slices only
    spaces = {"sees": (X, no_map), "blind": (noise, no_map)}
    return stratum, meta, run(classifier(meta, stratum, "planted"), spaces, meta)


def test_a_planted_stratum_is_found_where_the_embedding_shows_it(planted):
    stratum, meta, (table, members, iso) = planted
    flagged = table[table["flagged"] & (table["finding"] == "effusion")]
    sees = flagged[flagged["model"] == "sees"]
    assert len(sees), table[table["model"] == "sees"]
    target = set(meta.index[stratum & (meta["effusion"] == 1).to_numpy()])
    best = sees.loc[sees["drop"].idxmax()]
    got = members[(members["model"] == "sees") & (members["finding"] == "effusion")
                  & (members["slice"] == best["slice"])]  # fmt: skip
    precision = np.mean([i in target for i in got["image_id"]])
    recall = len(target & set(got["image_id"])) / len(target)
    assert precision > 0.9 and recall > 0.4, (precision, recall)  # one half at least
    # a slice of positives only: scored against all negatives outside it (BNSP), and far below
    assert best["metric"] == "bnsp" and best["auroc_in_high"] < best["auroc_out"] - 0.3
    assert best["auroc_in_low"] <= best["auroc_in"] <= best["auroc_in_high"]
    assert best["fn"] >= 0.8 * best["n_images"] and best["fp"] == 0
    assert "site B" in best["description"] and best["attribute"] == "site"
    # the space that shows the stratum isolates the errors; the one that does not, hardly
    eff = iso[iso["finding"] == "effusion"].set_index("model")
    assert eff.at["sees", "rank"] == 1 and eff.at["sees", "isolation"] > 0.4
    assert eff.at["blind", "isolation"] < 0.05


def test_the_other_finding_has_its_own_planted_slice_and_leads_name_it(planted):
    _, _, (table, members, _) = planted
    assert table.loc[table["flagged"] & (table["model"] == "sees"), "finding"].nunique() == 2
    leads = error_slice_leads(table, members)
    assert {x.kind for x in leads} == {KIND} and len(leads) >= 2
    top = max(leads, key=lambda x: x.strength)
    assert top.models[0] == "sees" and "fails on" in top.title and "BNSP" in top.evidence
    # each example is captioned: its call, label and score
    assert set(top.captions) == set(top.images) and top.legend.startswith("under each image")
    assert all(c[0].startswith(("FN", "FP")) and c[1].startswith("score ") for c in
               top.captions.values())  # fmt: skip
    r = table[table["flagged"]].sort_values("drop").iloc[-1]
    assert top.strength == pytest.approx(r["auroc_out"] - r["auroc_in"])
    own = members.merge(table.loc[[r.name], ["classifier", "finding", "model", "slice"]])
    errors = set(own.loc[own["error"], "image_id"])
    assert set(top.images) <= errors and len(top.images) == min(8, len(errors))


def test_a_slice_is_only_tested_on_images_that_did_not_choose_it(planted):
    _, _, (table, members, _) = planted
    halves = table.set_index(["finding", "model", "slice"])["found_on"]
    for (finding, model, name), sub in members.groupby(["finding", "model", "slice"]):
        found_on = halves[(finding, model, name)]
        if found_on.startswith("half "):
            assert set(sub["half"]) == {3 - int(found_on[-1])}, (finding, model, name)


def test_errors_at_random_give_no_slice():
    for seed in (0, 1, 2):
        ids, X, group, stratum, meta = world(seed=seed)
        table, _, iso = run(classifier(meta, stratum, "random", seed),
                            {"sees": (X, group)}, meta)  # fmt: skip
        scored = table[table["status"] == "scored"]
        assert len(scored) > 10 and not (scored["p_adj"] < 0.05).any(), scored.nsmallest(3, "p")
        assert (iso["slices_flagged"] == 0).all()


def test_map_clusters_are_scored_and_the_stratum_cluster_is_flagged():
    ids, X, group, stratum, meta = world(seed=4)
    table, members, _ = run(classifier(meta, stratum, "planted", 4), {"sees": (X, group)}, meta)
    clusters = table[(table["method"] == "cluster") & (table["finding"] == "effusion")]
    assert set(clusters["slice"]) == {f"c{g}" for g in range(8)}
    assert clusters.loc[clusters["flagged"], "slice"].tolist() == ["c3"]
    c3 = clusters.set_index("slice").loc["c3"]
    assert c3["n_images"] == (group == 3).sum() and c3["found_on"] == "map cluster"
    # an unremarkable cluster has its counts and test, no AUROC (it cannot be flagged)
    calm = clusters[clusters["p"] >= 0.05]
    assert len(calm) and calm["auroc_in"].isna().all() and (calm["n_images"] > 0).all()
    got = members[(members["slice"] == "c3") & (members["finding"] == "effusion")]
    assert set(got["image_id"]) == set(ids[group == 3])


def test_ranking_gives_every_auc_of_a_slice_as_defined():
    rng = np.random.default_rng(1)
    y = rng.random(600) < 0.3
    score = np.round(rng.normal(size=600) + y, 1)  # ties count half
    member = rng.random(600) < 0.2
    aucs = Ranking.of(y, score, np.arange(600), 0.5).aucs(member)
    bnsp = (member & y) | (~member & ~y)
    bpsn = (member & ~y) | (~member & y)
    assert aucs["auroc"] == pytest.approx(roc_auc_score(y[member], score[member]))
    assert aucs["out"] == pytest.approx(roc_auc_score(y[~member], score[~member]))
    assert aucs["bnsp"] == pytest.approx(roc_auc_score(y[bnsp], score[bnsp]))
    assert aucs["bpsn"] == pytest.approx(roc_auc_score(y[bpsn], score[bpsn]))


def test_the_stratified_test_holds_its_level_and_finds_a_worse_group():
    rng = np.random.default_rng(2)
    strata = rng.integers(0, 4, 4000)
    loss = rng.exponential(size=4000) * (1 + strata)  # strata differ, the groups do not
    group = rng.integers(-1, 200, 4000)
    values = stratum_ranks(loss, strata)
    _, p = grouped_test(values, group, strata, 200)
    assert 0.02 < (p < 0.05).mean() < 0.09
    # a group mostly of the top stratum's images is no worse for being of that stratum
    pick = (strata == 3) & (rng.random(4000) < 0.5)
    _, p = grouped_test(values, np.where(pick, 0, -1), strata, 1)
    assert p[0] > 0.1
    worse = group == 7
    _, p = grouped_test(stratum_ranks(np.where(worse, loss * 3, loss), strata),
                        np.where(worse, 0, -1), strata, 1)  # fmt: skip
    assert p[0] < 1e-4


def test_patient_halves_keep_patients_together_and_share_positives():
    rng = np.random.default_rng(3)
    patients = rng.integers(0, 300, 1000).astype(str)
    y = (rng.random(1000) < 0.2).astype(int)
    half = patient_halves(patients, y, seed=0)
    assert (pd.Series(half).groupby(patients).nunique() == 1).all()
    share = pd.Series(y).groupby(half).mean()
    assert set(half) == {1, 2} and abs(share[1] - share[2]) < 0.06
    assert (half == patient_halves(patients, y, seed=0)).all()


def test_forty_images_give_rows_with_reasons_not_errors():
    ids, X, group, stratum, meta = world(n=40, seed=5)
    table, members, iso = run(classifier(meta, stratum, "planted", 5), {"sees": (X, group)}, meta)
    skipped = table[table["status"] == "skipped"]
    assert set(skipped["finding"]) == set(FINDINGS) and skipped["reason"].str.len().gt(20).all()
    assert (iso["status"] == "skipped").all() and iso["reason"].str.contains("too few").all()


def test_the_atlas_column_lists_each_images_flagged_slices(planted):
    stratum, meta, (table, members, _) = planted
    cols = slice_columns(table, members, list(meta.index))
    assert set(cols) == {"slices_planted_sees", "slices_planted_blind"}
    lists = pd.Series(cols["slices_planted_sees"], index=meta.index)
    inside = lists.map(lambda v: any(x.startswith("effusion s") for x in v))
    assert inside[stratum & (meta["effusion"] == 1).to_numpy()].mean() > 0.4
    assert inside[~stratum].mean() < 0.02
    # the blind space flags no slice of its own: only the site the failure follows, which is
    # the same images on every map
    blind = pd.Series(cols["slices_planted_blind"], index=meta.index)
    assert set().union(*blind) == {"effusion site=B", "nodule site=B"}
    assert (blind.str.len() > 0).to_numpy().tolist() == (meta["site"] == "B").tolist()


def test_slice_settings_default_to_the_config_and_split_it(repo):
    slices = yaml.safe_load((repo / "config/config.yaml").read_text())["analysis"]["slices"]
    assert set(SliceSettings.KEYS) | set(AcrossSettings.KEYS) == set(slices)
    assert SliceSettings.from_config({"slices": slices, "seed": 0}) == SliceSettings()
    assert AcrossSettings.from_config({"slices": slices}) == AcrossSettings()


def test_a_finding_the_classifier_has_no_score_for_is_a_row_with_its_reason():
    ids, X, group, stratum, meta = world(n=400, seed=6)
    pred = classifier(meta, stratum, "planted", 6)
    pred = pred[pred["finding"] == "effusion"]  # its probe of `nodule` was skipped, say
    ctx = Context("probe_m", meta, FINDINGS, ("site",), dict.fromkeys(FINDINGS))
    r = slice_classifier(ctx, Space("m", pd.Index(meta.index), pca_space(X, 16, 0), group, {}),
                         pred, SliceSettings())  # fmt: skip
    nodule = r.table[r.table["finding"] == "nodule"]
    assert len(nodule) == 1 and nodule["status"].iloc[0] == "skipped"
    assert "probes.parquet says why" in nodule["reason"].iloc[0]
    assert (r.table.loc[r.table["finding"] == "effusion", "status"] == "scored").any()


def _site_world(n: int, seed: int, fails_at: str | None):
    """Three sites in a space where none of them is visible (noise embeddings, no map): a
    classifier right everywhere but inverted at `fails_at` (None: errors at random, 10 % of
    each class everywhere, as many as the planted failure makes)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"i{i:05d}" for i in range(n)], dtype=object)
    meta = pd.DataFrame({"patient_id": [f"p{i // 2}" for i in range(n)],
                         "site": rng.choice(["A", "B", "C"], n, p=[0.45, 0.4, 0.15]),
                         "sex": rng.choice(["F", "M"], n)},
                        index=pd.Index(ids, name="image_id"))  # fmt: skip
    for f in FINDINGS:
        meta[f] = pd.array((rng.random(n) < 0.3).astype(int), dtype="Int8")
    rows = []
    for f in FINDINGS:
        y = meta[f].to_numpy(int)
        score = np.where(y == 1, rng.normal(3, 1, n), rng.normal(0, 1, n))
        wrong = (meta["site"] == fails_at).to_numpy() if fails_at else rng.random(n) < 0.1
        score = np.where(wrong, 3 - score, score)  # inverted there
        rows.append(pd.DataFrame({"classifier": "vendor", "finding": f, "image_id": ids,
                                  "label": y.astype(np.int8), "score": score}))  # fmt: skip
    X = rng.normal(size=(n, 32)).astype(np.float32)
    return meta, pd.concat(rows, ignore_index=True), {"m": (X, np.full(n, -1))}


def test_a_classifier_failing_at_one_site_is_flagged_there_though_no_map_shows_the_site():
    """The planted site (15 % of the images, AUROC inverted) is the classifier's flagged slice
    in each finding, named by its value, and a lead says so; no other value is flagged."""
    meta, pred, spaces = _site_world(800, 11, "C")
    table, members, iso = run(pred, spaces, meta)
    flagged = table[table["flagged"]]
    attr = flagged[flagged["method"] == "attribute"]
    assert sorted(attr["slice"]) == ["site=C", "site=C"] and set(attr["finding"]) == set(FINDINGS)
    assert (attr["auroc_in_high"] < 0.5).all() and (attr["auroc_out"] > 0.9).all()
    assert (attr["found_on"] == "manifest value").all()
    got = members.merge(attr[["finding", "model", "slice"]])
    assert set(got["image_id"]) == set(meta.index[meta["site"] == "C"])
    assert iso["slices_flagged"].eq(0).all()  # not a slice of the map's: isolation leaves it
    titles = [x.title for x in error_slice_leads(table, members)]
    assert sum("in 111 images: those with site = C" in t for t in titles) == 2, titles


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_errors_at_random_flag_no_site_sex_or_other_slice(seed):
    meta, pred, spaces = _site_world(800, seed, None)
    table, _, _ = run(pred, spaces, meta)
    assert not table["flagged"].any(), table[table["flagged"]]
    assert (table["method"] == "attribute").sum() >= 4  # the values were tested


def test_the_atlas_holds_each_classifiers_call_at_its_slices_threshold():
    """call_<classifier>_<finding>: TP / TN / FP / FN at the threshold the slices were scored
    at (a set threshold, or the Youden point), equal to the label against the score; an image
    the classifier did not score is empty; a finding skipped without a threshold has none."""
    from cxratlas.atlas.table import call_columns

    meta, pred, spaces = _site_world(400, 5, "C")
    table, _, _ = run(pred, spaces, meta)
    ids = [*meta.index, "unscored"]
    calls = call_columns(table, [pred], ids)
    assert set(calls) == {"call_vendor_effusion", "call_vendor_nodule"}
    for finding in FINDINGS:
        got = pd.Series(calls[f"call_vendor_{finding}"], index=ids)
        rows = pred[pred["finding"] == finding].set_index("image_id")
        t = table.loc[table["finding"] == finding, "threshold"].dropna().iloc[0]
        wrong = (rows["score"] >= t) != (rows["label"] == 1)
        assert got[rows.index].isin(["FN", "FP"]).tolist() == wrong.tolist()
        assert (got[rows.index[rows["label"] == 1]].isin(["TP", "FN"])).all()
        assert calls[f"call_vendor_{finding}"][-1] is None  # "unscored"
    no_threshold = table.assign(threshold=np.where(table["finding"] == "nodule", np.nan,
                                                   table["threshold"]))  # fmt: skip
    assert set(call_columns(no_threshold, [pred], ids)) == {"call_vendor_effusion"}


def test_the_summary_says_what_was_searched_flagged_or_not():
    """A line per classifier and finding: the planted site's finding names its flagged slice,
    the null's says nothing was flagged and what was tested, a finding with too few positives
    says why it was not searched."""
    from cxratlas.slices.leads import classifier_lines

    meta, pred, spaces = _site_world(800, 11, "C")
    table, _, iso = run(pred, spaces, meta)
    lines = classifier_lines(table, iso)
    assert len(lines) == 2 and all(": 1 of " in x and "slices flagged (site=C; see the leads)" in x
                                   for x in lines)  # fmt: skip
    assert lines[0].startswith("**vendor** on effusion (800 images, ")
    meta, pred, spaces = _site_world(800, 21, None)
    table, _, iso = run(pred, spaces, meta)
    lines = classifier_lines(table, iso)
    assert all("no slice flagged of " in x and " manifest values in all)" in x for x in lines), (
        lines
    )
    few = table.assign(status="skipped", reason="too few positives: 3 (min 10)")
    assert classifier_lines(few, iso)[0] == ("**vendor** on effusion: not searched: too few "
                                             "positives: 3 (min 10)")  # fmt: skip


def test_a_failing_site_holding_most_images_is_tested_and_never_credited_to_a_map():
    """Site A holds 60 % of the images (more than a map slice may): a classifier failing there
    is flagged at site=A; a manifest value's copies in two spaces are one recurrence of their
    own, never joined to a slice a map found."""
    rng = np.random.default_rng(4)
    meta, pred, _ = _site_world(600, 4, None)
    meta["site"] = rng.choice(["A", "B"], len(meta), p=[0.6, 0.4])
    at_a = pred["image_id"].map(meta["site"]).eq("A").to_numpy()
    y = pred["label"].to_numpy()
    pred["score"] = np.where(at_a, rng.normal(0, 1, len(y)), np.where(y == 1, 3.0, 0.0)
                             + rng.normal(0, 1, len(y)))  # fmt: skip
    X = rng.normal(size=(len(meta), 32)).astype(np.float32)
    table, _, _ = run(pred, {"m1": (X, np.full(len(X), -1)), "m2": (X, np.full(len(X), -1))},
                      meta)  # fmt: skip
    flagged = table[table["flagged"]]
    assert set(flagged.loc[flagged["method"] == "attribute", "slice"]) == {"site=A"}
    attr = flagged[flagged["method"] == "attribute"]
    assert (attr["recurs_in"] == 2).all()
    for recurrence in attr["recurrence"]:  # nothing a map found shares its recurrence
        assert set(flagged.loc[flagged["recurrence"] == recurrence, "method"]) == {"attribute"}
