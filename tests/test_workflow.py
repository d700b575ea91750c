"""Snakemake end to end on phantoms in a temp dir, checked against the planted truth."""

from __future__ import annotations

import io
import json
import re
import subprocess

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from sklearn.metrics import adjusted_rand_score, roc_auc_score
from workflow_runs import (
    ANALYSIS,
    DEFAULT_MODELS,
    SNAKEMAKE,
    job_stats,
    slice_jobs,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.workflow


@pytest.mark.smoke  # make test-fast: the one end-to-end run
def test_every_model_shard_ran_and_reported(demo_run):
    for model in ("pixels_32", "pixels_64_pca"):
        for shard in range(3):
            rep = json.loads(
                (demo_run / f"results/embeddings/{model}/shard-{shard}.report.json").read_text()
            )
            assert rep["images"] == 100 and rep["embedded"] == 100 and rep["skipped"] == []
        merged = pq.read_table(demo_run / f"results/embeddings/{model}.parquet")
        assert merged.num_rows == 300
    assert (demo_run / "results/models/pixels_64_pca/state.npz").exists()
    assert not (demo_run / "results/models/pixels_32").exists()  # no fit step without PCA


@pytest.mark.smoke  # make test-fast: the one end-to-end run
def test_atlas_tracks_planted_truth(demo_run):
    atlas = pq.read_table(demo_run / "results/atlas/atlas.parquet").to_pandas()
    truth = pd.read_csv(demo_run / "resources/demo/manifest.csv", keep_default_na=False)
    truth = truth.set_index("image_id").loc[atlas["image_id"]]
    assert len(atlas) == 300
    structure = (truth["manufacturer"] + "|" + truth["view_position"]).to_numpy()
    inlier = truth["gt_outlier"].to_numpy() == 0
    rng = np.random.default_rng(0)
    for model in ("pixels_32", "pixels_64_pca"):
        clusters = atlas[f"cluster_{model}"].to_numpy()
        ari = adjusted_rand_score(structure[inlier], clusters[inlier])
        chance = adjusted_rand_score(rng.permutation(structure[inlier]), clusters[inlier])
        assert ari > 0.4 and abs(chance) < 0.02, (model, ari, chance)
        auroc = roc_auc_score(truth["gt_outlier"], atlas[f"outlier_{model}"])
        assert auroc > 0.9, (model, auroc)
        assert np.isfinite(atlas[f"x_{model}"]).all() and np.isfinite(atlas[f"y_{model}"]).all()
        for nb in atlas[f"neighbors_{model}"]:
            assert len(nb["ids"]) == 15 and all(0 <= i < 300 for i in nb["ids"])
    for png in atlas["thumbnail"].sample(20, random_state=0):
        assert Image.open(io.BytesIO(png)).format == "PNG"
    assert "gt_outlier" not in atlas.columns  # ground truth never reaches the atlas
    assert "patient_id" not in atlas.columns and atlas["patient_id_hash"].notna().all()
    assert {"cardiomegaly", "pleural_effusion", "support_devices", "findings"} <= set(atlas)


@pytest.mark.smoke  # make test-fast: the one end-to-end run
def test_reduce_summaries_report_recall_trust_and_memory(demo_run):
    for model in ("pixels_32", "pixels_64_pca"):
        summary = json.loads((demo_run / f"results/reduce/{model}/summary.json").read_text())
        assert summary["backend"] == "cpu" and summary["n"] == 300
        assert summary["knn"]["method"] == "exact" and summary["knn"]["recall"] == 1.0
        assert 0.8 < summary["trustworthiness"] <= 1.0
        mem = summary["memory"]
        assert mem["matrix_mib"] == pytest.approx(300 * summary["dim"] * 4 / 2**20)
        assert mem["peak_above_start_mib"] > 0 and mem["peak_over_matrix"] > 0


@pytest.mark.smoke  # make test-fast: the one end-to-end run
def test_second_run_has_nothing_to_do(repo, demo_run):
    out = snakemake(repo, demo_run, "-n").stdout
    assert "Nothing to be done" in out


def test_how_jobs_run_is_not_a_reason_to_re_embed(repo, demo_run):
    """Workers, device and the skip tolerance change how a shard job runs, not what it writes:
    they are read from the config by the scripts, not rule params (a param change reruns)."""
    how = {"num_workers": 1, "device": "cpu", "max_skipped_fraction": 0.2}
    (demo_run / "how.yaml").write_text(yaml.safe_dump({"extract": how}))
    out = snakemake(repo, demo_run, "-n", "--configfile", str(demo_run / "test.yaml"),
                    str(demo_run / "how.yaml")).stdout  # fmt: skip
    assert "Nothing to be done" in out
    # while what changes the file does rerun: float16 storage re-embeds every shard
    (demo_run / "how.yaml").write_text(yaml.safe_dump({"extract": {"storage": "float16"}}))
    out = snakemake(repo, demo_run, "-n", "--configfile", str(demo_run / "test.yaml"),
                    str(demo_run / "how.yaml")).stdout  # fmt: skip
    assert job_stats(out)["embed_shard"] == 6


def test_dry_run_plans_every_shard_and_a_new_model_alone(repo, demo_run, tmp_path):
    write_config(tmp_path)
    out = snakemake(repo, tmp_path, "-n").stdout
    assert out.count("rule embed_shard:") == 6
    for shard in range(3):
        assert f"results/embeddings/pixels_32/shard-{shard}.parquet" in out
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
    # after a run, adding a model plans only that model's jobs plus the atlas
    added = {"models": {"pixels_16": {"kind": "pixels", "image_size": 16}}}
    (demo_run / "added.yaml").write_text(yaml.safe_dump(added))
    out = snakemake(repo, demo_run, "-n", "--configfile", str(demo_run / "test.yaml"),
                    str(demo_run / "added.yaml")).stdout  # fmt: skip
    stats = job_stats(out)
    assert stats == {
        "embed_shard": 3,
        "merge_embeddings": 1,
        "reduce": 1,
        "atlas": 1,
        "all": 1,
        **ANALYSIS,
        **slice_jobs(*DEFAULT_MODELS, "pixels_16"),
    }
    for old in ("pixels_32", "pixels_64_pca"):  # no job writes an old model's shard
        assert f"output: results/embeddings/{old}/shard" not in out


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"extract": {"shard_sise": 5}}, "extract.shard_sise: unknown key"),
        ({"models": {"m": {"kind": "clipz"}}}, "models.m.kind: 'clipz' is not allowed"),
        ({"models": {"bad-name": {"kind": "pixels"}}}, "models.bad-name: the name 'bad-name'"),
    ],
)
def test_config_errors_name_the_key(repo, tmp_path, extra, message):
    write_config(tmp_path, extra)
    proc = snakemake(repo, tmp_path, "-n", check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_lint_clean(repo):
    proc = subprocess.run(
        [*SNAKEMAKE, "--lint", "-s", str(repo / "Snakefile")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.smoke  # make test-fast: the one end-to-end run
def test_analyses_track_the_planted_truth(demo_run):
    """Probes on planted findings beat chance widely, clusters and the outlier group gather
    planted structure, and the contact sheets exist."""
    from cxratlas.analysis.enrichment import model_groups
    from cxratlas.analysis.probes import ProbeSettings, run_probes

    probes = pd.read_parquet(demo_run / "results/analysis/probes/probes.parquet")
    assert set(probes["finding"]) >= {"cardiomegaly", "pleural_effusion", "support_devices"}
    # no_finding is only ever positive in the demo: a skipped row that says so
    skipped = probes[probes["status"] == "skipped"]
    assert set(skipped["finding"]) == {"no_finding"}
    assert skipped["reason"].str.contains(" 0 negative").all()
    drawn = probes[(probes["finding"] != "pneumonia") & (probes["status"] == "scored")]
    assert (drawn["auroc"] > 0.75).all() and (drawn["ci_low"] > 0.6).all()
    emb = {m: str(demo_run / f"results/embeddings/{m}.parquet") for m in ("pixels_32",)}
    # one shuffle's AUROC spreads widely (0.39-0.64 over five seeds here): average five
    nulls = [
        run_probes(emb, str(demo_run / "results/manifest.parquet"), ["cardiomegaly"],
                   ProbeSettings(bootstrap=20, seed=seed), shuffle_labels=True).table["auroc"]
        .iloc[0]
        for seed in range(5)
    ]  # fmt: skip
    assert abs(np.mean(nulls) - 0.5) < 0.08, nulls
    pairs = pd.read_parquet(demo_run / "results/analysis/compare/pairs.parquet")
    assert len(pairs) == 1 and 0 < pairs["jaccard_k"].iloc[0] <= 1 and pairs["ari"].iloc[0] > 0.3
    truth = pd.read_csv(demo_run / "resources/demo/manifest.csv", keep_default_na=False)
    truth = truth.set_index("image_id")
    reduced = pd.read_parquet(demo_run / "results/reduce/pixels_32/reduced.parquet")
    groups = model_groups(reduced, 0.95)
    planted = truth.loc[reduced["image_id"], "gt_outlier"].astype(bool).to_numpy()
    assert planted[groups["outliers"]].mean() > 4 * planted.mean()
    described = pd.read_parquet(demo_run / "results/analysis/clusters/pixels_32/groups.parquet")
    clusters = described[described["group"].str.match(r"c\d")]
    assert (clusters["top_view_position_share"] > 0.8).sum() >= 2  # view-pure clusters
    sheet = Image.open(demo_run / "results/analysis/clusters/pixels_32/contact_sheet.png")
    assert sheet.size[0] > 8 * 96 and sheet.size[1] >= 96 * len(described)
    atlas = pq.read_table(demo_run / "results/atlas/atlas.parquet")
    agree = atlas.column("agreement").to_numpy()
    assert ((agree >= 0) & (agree <= 1)).all() and {"agreement_pixels_32"} <= set(
        atlas.schema.names
    )


def test_the_audit_flags_the_planted_shortcut_and_not_the_drawn_findings(demo_run):
    """The demo's pneumonia label follows the vendor and is never drawn; cardiomegaly, effusion
    and devices are drawn. Phantoms carry view and vendor in their pixels, never sex."""
    out = demo_run / "results/analysis/shortcuts"
    table = pd.read_csv(out / "confounding.tsv", sep="\t").set_index(["finding", "model"])
    for model in ("pixels_32", "pixels_64_pca"):
        assert table.at[("pneumonia", model), "flagged"], table.loc["pneumonia"]
        assert "within-manufacturer" in table.at[("pneumonia", model), "reason"]
        for drawn in ("cardiomegaly", "pleural_effusion"):
            assert not table.at[(drawn, model), "flagged"]
            assert table.at[(drawn, model), "within_site_auroc"] > 0.8
        assert table.at[("pneumonia", model), "site"] == "manufacturer"
    attrs = pd.read_parquet(out / "attributes.parquet").set_index(["model", "attribute"])
    for model in ("pixels_32", "pixels_64_pca"):
        assert attrs.at[(model, "view_position"), "value"] > 0.9
        assert attrs.at[(model, "manufacturer"), "value"] > 0.9
        assert abs(attrs.at[(model, "sex"), "value"] - 0.5) < 0.1  # nothing drawn by sex
        assert abs(attrs.at[(model, "manufacturer"), "control"] - 0.5) < 0.1
    gaps = pd.read_parquet(out / "gaps.parquet")
    assert {"view_position", "manufacturer", "sex"} <= set(gaps["attribute"])
    subgroups = pd.read_parquet(out / "subgroups.parquet")
    views = subgroups[subgroups["attribute"] == "view_position"]
    assert {"AP", "PA"} <= set(views["group"])  # AP and PA reported apart
    atlas = pq.read_schema(demo_run / "results/atlas/atlas.parquet").names
    assert {"age_band", "sex", "manufacturer", "view_position"} <= set(atlas)


def test_where_models_disagree_and_whether_clusters_are_stable(demo_run):
    atlas = pq.read_table(demo_run / "results/atlas/atlas.parquet").to_pandas()
    pair = atlas["agreement_pixels_32_vs_pixels_64_pca"]
    assert pair.between(0, 1).all() and pair.std() > 0
    out = demo_run / "results/analysis/disagreement"
    images = pd.read_parquet(out / "images.parquet")
    assert len(images) == 12 and images["image_id"].is_unique
    # the pair columns are read back row for row: each listed image's values are the atlas's
    at = atlas.set_index("image_id").loc[images["image_id"]]
    assert np.allclose(at["agreement_pixels_32_vs_pixels_64_pca"],
                       images["agreement_pixels_32_vs_pixels_64_pca"])  # fmt: skip
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[1] >= 12 * 96 and sheet.size[0] >= 9 * 96  # image + 4 per model
    curve = pd.read_parquet(out / "curve.parquet")
    assert curve["n"].tolist() == [75, 150, 300]  # quarter, half, all of a 300-image run
    assert curve["mutual_knn_jaccard"].between(0, 1).all() and curve["cka"].between(0, 1).all()
    for model in ("pixels_32", "pixels_64_pca"):
        sweep = pd.read_parquet(demo_run / f"results/analysis/clusters/{model}/stability.parquet")
        at = sweep.set_index("min_cluster_size")
        assert at.at[10, "configured"] and at.at[10, "ari_with_workflow"] == 1.0
        assert len(sweep) >= 6 and sweep["noise_share"].between(0, 1).all()


# matplotlib figures the 300-image demo run draws: EDA, love plot, agreement heatmaps and curve,
# probes, the shortcut audit's three, label noise, skipped images, per model its stability
# sweep and its two maps (each as PNG and SVG). Contact sheets and image strips are PIL images.
DEMO_FIGURES = 21  # 20 analysis figures and the error slices' isolation chart


@pytest.mark.smoke  # make test-fast: reads the shared run's figure checks, adds no run
def test_every_figure_of_the_run_is_readable(demo_run):
    """No text outside its figure or over other text, no legend over data, no CI cut by an
    axis, readable contrast, a sentence instead of empty axes: measured on every figure the
    run drew (`cxratlas.figure_check`, recorded by save_figure for the demo_run fixture)."""
    checks = [json.loads(p.read_text()) for p in (demo_run / "figure-checks").glob("*.json")]
    checked = {c["figure"] for c in checks}
    pngs = {str(p.relative_to(demo_run)) for p in (demo_run / "results/analysis").rglob("*.png")}
    # contact sheets and the error slices' strips are PIL images: no matplotlib text to check
    sheets = {p for p in pngs if p.endswith("contact_sheet.png") or "/strips/" in p}
    assert len(checks) == DEMO_FIGURES and pngs - sheets <= checked, sorted(pngs - sheets - checked)
    assert sum(c["texts"] for c in checks) > 500 and sum(c["errorbars"] for c in checks) >= 8
    problems = [f"{c['figure']}: {p['detail']}" for c in checks for p in c["problems"]]
    assert problems == [], "\n".join(problems)


def test_html_report_holds_the_analyses_with_captions(repo, demo_run):
    snakemake(repo, demo_run, "--report", "report.html")
    html = (demo_run / "report.html").read_text(errors="replace")
    for text in ("Cross-model comparison", "Linear probes", "contact_sheet.png", "patient-level",
                 "Data quality", "skipped.png", "summary.tsv", "Bias and shortcuts",
                 "confounding.png", "Is it the disease or the site?", "love_plot.png",
                 "clusters.png", "What this study found",
                 "Leads: what to look at next"):  # fmt: skip
        assert text in html, text


@pytest.mark.smoke  # make test-fast: the one end-to-end run
def test_the_summary_leads_with_the_planted_truth(demo_run):
    """The demo plants a pneumonia-manufacturer shortcut, inverted/rotated/cropped outliers and
    lateral films: each is among the top leads, with its captioned images, and the summary comes
    first in the report and beside it as Markdown."""
    leads = pd.read_parquet(demo_run / "results/summary/leads.parquet")
    top = leads[leads["rank"] <= 10]
    shortcut = top[(top["kind"] == "shortcut") & top["title"].str.startswith("pneumonia")]
    assert len(shortcut) and shortcut["title"].str.contains("manufacturer").all()
    lateral = top[(top["kind"] == "cluster_attribute") & top["title"].str.contains("LATERAL")]
    assert len(lateral), top[["kind", "title"]]
    truth = pd.read_csv(demo_run / "resources/demo/manifest.csv", keep_default_na=False)
    truth = truth.set_index("image_id")
    views = truth.loc[list(lateral["images"].iloc[0]), "view_position"]
    assert (views == "LATERAL").all()  # its example images are lateral films
    # each example image is captioned with the attribute in question
    assert all("LATERAL" in c for c in lateral["captions"].iloc[0])
    for captions, images in zip(shortcut["captions"], shortcut["images"], strict=True):
        assert len(captions) == len(images) and all("pneumonia +" in c for c in captions)
        vendors = truth.loc[list(images), "manufacturer"]
        assert all(v in c for v, c in zip(vendors, captions, strict=True))
    outliers = leads[leads["kind"] == "outliers"]
    planted = truth["gt_outlier"].astype(int)
    # one lead for the outlier regions of both models, listing them
    assert len(outliers) == 1 and outliers["rank"].min() <= 10
    assert set(outliers["model"].iloc[0].split(", ")) == {"pixels_32", "pixels_64_pca"}
    for images in outliers["images"]:  # planted at 5 %: most of each strip is planted
        assert planted.loc[list(images)].mean() >= 0.5
    md = (demo_run / "results/summary/summary.md").read_text()
    assert md.startswith("# What this study found") and "![examples](strips/lead-1.png)" in md
    assert (demo_run / "results/summary/strips/lead-1.png").stat().st_size > 1000
    for source in leads["source"]:  # every number is traceable to a table of the run
        assert (demo_run / source.split(":")[0].split(" and ")[0]).exists(), source


@pytest.mark.smoke
def test_the_summary_compares_the_models_first_and_every_lead_is_sound(demo_run):
    """The comparison (probe table with the best marked, paired differences, agreement with
    intervals, a sentence per model) comes before the per-model paragraphs; a finding repeated
    on several models is one lead; coinciding attributes are named together; a zero cell gives
    shares, not an odds ratio; every term the summary uses is explained."""
    from cxratlas.analysis.summary import GLOSSARY

    md = (demo_run / "results/summary/summary.md").read_text()
    order = [md.index(h) for h in ("## How the models compare", "## The models one by one",
                                   "## Leads", "## Checks", "## Maps", "## Terms")]  # fmt: skip
    assert order == sorted(order)
    compare = md[order[0] : order[1]]
    probes = pd.read_parquet(demo_run / "results/analysis/probes/probes.parquet")
    scored = probes[probes["status"] == "scored"]
    for finding, sub in scored.groupby("finding"):
        best = sub.loc[sub["auroc"].idxmax()]
        row = next(x for x in compare.splitlines() if x.startswith(f"| {finding} |"))
        assert f"**{best['auroc']:.2f} ({best['ci_low']:.2f}-{best['ci_high']:.2f})**" in row
    diffs = pd.read_parquet(demo_run / "results/analysis/probes/differences.parquet")
    assert len(diffs) == scored["finding"].nunique()  # one pair of models per finding
    for r in diffs[diffs["separated"]].itertuples():
        assert f"{r.finding}: {r.model_a} {r.auroc_a:.2f} over {r.model_b}" in compare
    pairs = pd.read_parquet(demo_run / "results/analysis/compare/pairs.parquet")
    p = pairs.iloc[0]
    assert f"{p.jaccard_k:.2f} ({p.jaccard_low:.2f}-{p.jaccard_high:.2f})" in compare
    assert f"{p.ari:.2f} ({p.ari_low:.2f}-{p.ari_high:.2f})" in compare
    assert compare.count("- **pixels_32**") == 1 and compare.count("- **pixels_64_pca**") == 1
    models_part = md[order[1] : order[2]]
    assert "CIs overlap" not in models_part  # a gap is named only where its CIs separate
    leads = pd.read_parquet(demo_run / "results/summary/leads.parquet")
    subjects = leads["title"].str.replace(r" \([^()]*\)$", "", regex=True)
    assert not subjects.duplicated().any(), leads["title"].tolist()
    lateral = leads[leads["title"].str.contains("LATERAL") & (leads["kind"] == "cluster_attribute")]
    # the demo's lateral cluster is all one vendor too: both named, as not separable
    coincide = lateral[lateral["evidence"].str.contains("coincide")]
    assert len(coincide) and coincide["title"].str.contains("manufacturer = Fujifilm").any()
    for evidence in leads["evidence"]:
        for ratio in re.findall(r"odds ratio ([0-9.]+)", evidence):
            assert float(ratio) < 100, evidence  # a huge ratio only comes from a zero cell
    for term in GLOSSARY:
        assert f"**{term}**" in md[order[5] :]


def test_label_noise_scores_against_the_original_labels_over_several_draws(demo_run):
    """Trained on flipped labels, the probe is scored against the original labels (what the
    errors cost) and the flipped ones (what a user measures, beside the fall the flips alone
    explain), over five seeded draws a fraction."""
    from cxratlas.analysis.label_noise import attenuated, noise_summary

    noise = pd.read_parquet(demo_run / "results/analysis/label_noise/label_noise.parquet")
    probes = pd.read_parquet(demo_run / "results/analysis/probes/probes.parquet")
    assert set(noise["fraction"]) == {0, 0.05, 0.1, 0.2, 0.3} and set(noise["repeat"]) == set(
        range(5)
    )
    summary = noise_summary(noise)
    for model, sub in summary.groupby("model"):
        sub = sub.set_index("fraction")
        finding = sub["finding"].iloc[0]  # auto: the demo's most balanced finding
        probe = probes.set_index(["finding", "model"]).loc[(finding, model)]
        clean = probe["auroc"]
        first = noise[(noise["model"] == model) & (noise["repeat"] == 0) & (noise["fraction"] == 0)]
        assert first["auroc_clean"].iloc[0] == pytest.approx(clean)  # same folds, same labels
        # nothing flipped: both scorings are the same labels
        assert sub.at[0.0, "auroc_noisy"] == pytest.approx(sub.at[0.0, "auroc_clean"])
        # the measured fall is mostly the scoring: the original labels see much less of it
        assert sub.at[0.3, "auroc_noisy"] < sub.at[0.0, "auroc_clean"] - 0.1
        assert sub.at[0.3, "auroc_clean"] > sub.at[0.3, "auroc_noisy"] + 0.05
        prevalence = probe["positives"] / probe["n"]
        expected = attenuated(sub.at[0.0, "auroc_clean"], 0.3, prevalence)
        assert sub.at[0.3, "expected_noisy"] == pytest.approx(expected)
        assert expected < sub.at[0.0, "auroc_clean"] - 0.1  # the flips alone explain a fall
        assert sub.at[0.3, "max_odds_ratio"] < sub.at[0.0, "max_odds_ratio"]
        assert sub.at[0.3, "cluster_nmi"] <= sub.at[0.0, "cluster_nmi"] + 1e-9
        assert (sub["auroc_clean_low"] <= sub["auroc_clean"]).all()


def test_one_model_over_two_datasets(repo, tmp_path):
    """A second site whose scanner burns a bright frame into every image (planted site
    artefact): the atlas gets a `dataset` column and each model's map keeps the sites apart."""
    from cxratlas.demo.phantom import generate_demo

    site_b = tmp_path / "site_b"
    generate_demo(site_b, n_images=150, seed=5, outlier_fraction=0, progress=False)
    for png in (site_b / "images").glob("*.png"):
        img = np.asarray(Image.open(png)).copy()
        b = img.shape[0] // 8
        img[:b], img[-b:], img[:, :b], img[:, -b:] = 255, 255, 255, 255
        Image.fromarray(img).save(png)
    cfg = {
        "dataset": {"name": "site_a", "demo": {"n_images": 200, "seed": 11}},
        "datasets": [{"name": "site_b", "preset": "generic", "id_prefix": "b-",
                      "manifest": str(site_b / "manifest.csv"), "image_root": str(site_b)}],
        "sample": {"n": 350, "stratify_by": ["dataset"]},
        "extract": {"shard_size": 175},
    }  # fmt: skip
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(cfg))
    plan = job_stats(snakemake(repo, tmp_path, "-n").stdout)
    assert plan["datasets"] == 1 and plan["ingest"] == 1
    snakemake(repo, tmp_path)

    atlas = pq.read_table(tmp_path / "results/atlas/atlas.parquet").to_pandas()
    assert atlas["dataset"].value_counts().to_dict() == {"site_a": 200, "site_b": 150}
    assert atlas.loc[atlas["dataset"] == "site_b", "image_id"].str.startswith("b-").all()
    state = json.loads((tmp_path / "results/atlas/state.json").read_text())
    assert "dataset" in [c["data"].get("field") for c in state["charts"].values() if "data" in c]

    clusters = pd.read_parquet(tmp_path / "results/analysis/datasets/clusters.parquet")
    mixing = pd.read_parquet(tmp_path / "results/analysis/datasets/mixing.parquet")
    for model in ("pixels_32", "pixels_64_pca"):
        assert clusters.loc[clusters["model"] == model, "n"].sum() == 350
        row = mixing[(mixing["model"] == model) & (mixing["dataset"] == "all")].iloc[0]
        assert row["separation"] > 0.8, row  # the frame dominates the pixels
        assert row["ari_cluster_dataset"] > 0.1
        # most images sit in clusters that are nearly one site
        pure = clusters[(clusters["model"] == model) & (clusters["share_in_cluster"] > 0.9)]
        assert pure["n"].sum() > 0.7 * 350
    assert (tmp_path / "results/analysis/datasets/datasets.png").stat().st_size > 5000


def test_shuffled_labels_give_no_shortcut_gap_fragile_lead_or_model_difference(demo_run, tmp_path):
    """No planted structure (every finding shuffled across images): the audit finds nothing to
    explain, so no shortcut, subgroup-gap or fragile lead is drawn, and no model is claimed to
    classify a finding better than another."""
    from cxratlas.analysis.label_noise import NoiseSettings, label_noise_sensitivity
    from cxratlas.analysis.leads import Study, fragile_leads, gap_leads, shortcut_leads
    from cxratlas.analysis.probe_differences import paired_differences
    from cxratlas.analysis.probes import ProbeSettings, patient_groups, run_probes
    from cxratlas.analysis.shortcuts import ShortcutSettings, run_audit
    from cxratlas.io import read_manifest, write_manifest

    manifest, columns = read_manifest(demo_run / "results/manifest.parquet")
    rng = np.random.default_rng(0)
    for finding in columns.findings:
        manifest[finding] = rng.permutation(manifest[finding].to_numpy())
    shuffled = tmp_path / "shuffled.parquet"
    write_manifest(columns.tag(manifest), shuffled)
    models = ["pixels_32", "pixels_64_pca"]
    emb = {m: str(demo_run / f"results/embeddings/{m}.parquet") for m in models}
    red = {m: str(demo_run / f"results/reduce/{m}/reduced.parquet") for m in models}
    audit = run_audit(emb, str(shuffled), None, ProbeSettings(bootstrap=200),
                      ShortcutSettings())  # fmt: skip
    noise, _ = label_noise_sensitivity(emb, red, str(shuffled),
                                       NoiseSettings(fractions=(0.0, 0.1), repeats=5))  # fmt: skip
    reduced = {m: pd.read_parquet(path) for m, path in red.items()}
    study = Study(models, audit.confounding, audit.gaps, audit.subgroups, {}, {}, reduced,
                  manifest.set_index("image_id"), label_noise=noise)  # fmt: skip
    assert (audit.confounding["status"] == "scored").any()  # the findings were audited
    assert (noise["status"] == "scored").all()  # and flipped
    assert shortcut_leads(study) == [] and gap_leads(study) == [] and fragile_leads(study) == []
    probes = run_probes(emb, str(shuffled), settings=ProbeSettings(bootstrap=300))
    indexed = manifest.set_index("image_id")
    diffs = paired_differences(probes.scores, probes.table,
                               patient_groups(indexed, indexed.index), 300, 0)  # fmt: skip
    assert len(diffs) and not diffs["separated"].any()
