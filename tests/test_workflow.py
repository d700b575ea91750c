"""Snakemake end to end on phantoms in a temp dir, checked against the planted truth."""

from __future__ import annotations

import io
import json
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
        ({"extract": {"shard_sise": 5}}, "'shard_sise' was unexpected"),
        ({"models": {"m": {"kind": "clipz"}}}, "'clipz' is not one of"),
        ({"models": {"bad-name": {"kind": "pixels"}}}, "bad-name"),
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
    lateral films: each is among the top leads, with its images, and the summary comes first
    in the report and beside it as Markdown."""
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
    outliers = leads[leads["kind"] == "outliers"]
    planted = truth["gt_outlier"].astype(int)
    assert len(outliers) == 2 and outliers["rank"].min() <= 10  # one region per model
    for images in outliers["images"]:  # planted at 5 %: most of each strip is planted
        assert planted.loc[list(images)].mean() >= 0.5
    md = (demo_run / "results/summary/summary.md").read_text()
    assert md.startswith("# What this study found") and "![examples](strips/lead-1.png)" in md
    assert (demo_run / "results/summary/strips/lead-1.png").stat().st_size > 1000
    for source in leads["source"]:  # every number is traceable to a table of the run
        assert (demo_run / source.split(":")[0].split(" and ")[0]).exists(), source


def test_label_noise_degrades_what_the_clean_labels_show(demo_run):
    noise = pd.read_parquet(demo_run / "results/analysis/label_noise/label_noise.parquet")
    probes = pd.read_parquet(demo_run / "results/analysis/probes/probes.parquet")
    assert set(noise["fraction"]) == {0, 0.05, 0.1, 0.2, 0.3}
    for model, sub in noise.groupby("model"):
        sub = sub.set_index("fraction")
        finding = sub["finding"].iloc[0]  # auto: the demo's most balanced finding
        clean = probes.set_index(["finding", "model"]).loc[(finding, model), "auroc"]
        assert sub.at[0.0, "probe_auroc"] == pytest.approx(clean)  # same folds, same labels
        assert sub.at[0.3, "probe_auroc"] < clean - 0.1
        assert sub.at[0.3, "max_odds_ratio"] < sub.at[0.0, "max_odds_ratio"]
        assert sub.at[0.3, "cluster_nmi"] <= sub.at[0.0, "cluster_nmi"] + 1e-9


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


def test_shuffled_labels_give_no_shortcut_lead(demo_run, tmp_path):
    """No planted structure (every finding shuffled across images): the audit finds nothing to
    explain, so no shortcut and no subgroup-gap lead is drawn."""
    from cxratlas.analysis.leads import Study, gap_leads, shortcut_leads
    from cxratlas.analysis.probes import ProbeSettings
    from cxratlas.analysis.shortcuts import ShortcutSettings, run_audit
    from cxratlas.io import read_manifest, write_manifest

    manifest, columns = read_manifest(demo_run / "results/manifest.parquet")
    rng = np.random.default_rng(0)
    for finding in columns.findings:
        manifest[finding] = rng.permutation(manifest[finding].to_numpy())
    write_manifest(columns.tag(manifest), tmp_path / "shuffled.parquet")
    models = ["pixels_32", "pixels_64_pca"]
    emb = {m: str(demo_run / f"results/embeddings/{m}.parquet") for m in models}
    audit = run_audit(emb, str(tmp_path / "shuffled.parquet"), None,
                      ProbeSettings(bootstrap=200), ShortcutSettings())  # fmt: skip
    reduced = {m: pd.read_parquet(demo_run / f"results/reduce/{m}/reduced.parquet") for m in models}
    study = Study(models, audit.confounding, audit.gaps, audit.subgroups, {}, {}, reduced,
                  manifest.set_index("image_id"))  # fmt: skip
    assert (audit.confounding["status"] == "scored").any()  # the findings were audited
    assert shortcut_leads(study) == [] and gap_leads(study) == []
