"""Error slices end to end on the shared demo run: the probes as classifiers out of the box, a
user's classifier added (its own jobs only, its mistakes stopped before any job), and a
classifier planted to fail on the phantoms' planted outliers caught where the maps show them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from workflow_runs import job_stats, snakemake

from cxratlas.io import classifier_of

pytestmark = pytest.mark.workflow
CONTRACT = ["classifier", "finding", "model", "slice", "n_images", "n_patients", "auroc_in",
            "auroc_in_low", "auroc_in_high", "auroc_out", "p_adj", "description", "status",
            "reason"]  # fmt: skip
MODELS = ("pixels_32", "pixels_64_pca")


def truth(run) -> pd.DataFrame:
    return pd.read_csv(run / "resources/demo/manifest.csv", keep_default_na=False).set_index(
        "image_id"
    )


def planted_predictions(run, kind: str, seed: int = 0) -> pd.DataFrame:
    """A vendor's cardiomegaly scores, as a vendor would send them (its own column names):
    `planted` is right except on the planted outlier films (inverted, rotated, cropped), where
    it is wrong both ways; `random` errs on 15 % of the positives at random."""
    man = pd.read_parquet(run / "results/manifest.parquet").set_index("image_id")
    rng = np.random.default_rng(seed)
    y = man["cardiomegaly"].fillna(0).clip(0, 1).to_numpy(int)
    score = np.where(y == 1, rng.normal(3, 1, len(y)), rng.normal(0, 1, len(y)))
    if kind == "planted":
        wrong = truth(run).loc[man.index, "gt_outlier"].to_numpy() == 1
        score = np.where(wrong, np.where(y == 1, rng.normal(0, 1, len(y)),
                                         rng.normal(3, 1, len(y))), score)  # fmt: skip
    else:
        score = np.where((y == 1) & (rng.random(len(y)) < 0.15), rng.normal(0, 1, len(y)), score)
    return pd.DataFrame({"case": man.index, "p_cardio": score})


def with_classifier(run, preds: pd.DataFrame, name: str = "vendor") -> str:
    preds.to_csv(run / f"{name}.csv", index=False)
    entry = {"predictions": str(run / f"{name}.csv"), "id_column": "case",
             "findings": {"cardiomegaly": "p_cardio"}}  # fmt: skip
    (run / f"{name}.yaml").write_text(yaml.safe_dump({"classifiers": {name: entry}}))
    return str(run / f"{name}.yaml")


@pytest.mark.smoke  # make test-fast: reads the shared run
def test_the_probes_are_audited_out_of_the_box(demo_run):
    out = demo_run / "results/analysis/slices"
    table = pd.read_parquet(out / "slices.parquet")
    assert set(CONTRACT) <= set(table.columns)
    assert set(table["classifier"]) == {f"probe_{m}" for m in MODELS}
    assert set(table["model"]) == set(MODELS) and set(table["status"]) <= {"scored", "skipped"}
    skipped = table[table["status"] == "skipped"]
    assert skipped["reason"].str.len().gt(10).all()
    members = pd.read_parquet(out / "members.parquet")
    assert list(members.columns[:5]) == ["classifier", "finding", "model", "slice", "image_id"]
    key = ["classifier", "finding", "model", "slice"]
    assert len(members.merge(table[key])) == len(members)  # every member's slice is a row
    for m in MODELS:  # the probes' classifier tables name their classifier
        path = demo_run / f"results/classifiers/probe_{m}.parquet"
        assert classifier_of(path) == f"probe_{m}"
        assert pq.read_schema(path).names == ["classifier", "finding", "image_id", "label", "score"]
    iso = pd.read_parquet(out / "isolation.parquet")
    assert len(iso) == len(table[["classifier", "finding", "model"]].drop_duplicates())
    atlas = pq.read_table(demo_run / "results/atlas/atlas.parquet")
    flagged = table[table["flagged"]]
    for (c, m), rows in flagged.groupby(["classifier", "model"]):
        column = atlas.column(f"slices_{c}_{m}")
        assert pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type)
        labels = {x for v in column.to_pylist() for x in v}
        assert labels == {f"{r.finding} {r.slice}" for r in rows.itertuples()}
    state = (demo_run / "results/atlas/state.json").read_text()
    for (c, m), _ in flagged.groupby(["classifier", "model"]):  # a count plot to click
        assert f'"field": "slices_{c}_{m}"' in state
    # each probe's call on each image, where its finding was scored, to colour a map by
    scored = table.dropna(subset=["threshold"])[["classifier", "finding"]].drop_duplicates()
    assert len(scored)
    for r in scored.itertuples():
        calls = atlas.column(f"call_{r.classifier}_{r.finding}").to_pylist()
        assert set(calls) <= {"TP", "TN", "FP", "FN", None} and {"TP", "TN"} <= set(calls)
        assert f'"field": "call_{r.classifier}_{r.finding}"' in state
    for c in (f"probe_{m}" for m in MODELS):
        with Image.open(out / f"strips/{c}.png") as img:
            assert img.width >= 640 and img.height > 30


def test_adding_a_classifier_plans_only_its_own_jobs(repo, demo_run):
    config = with_classifier(demo_run, planted_predictions(demo_run, "planted"), "vendor_added")
    out = snakemake(repo, demo_run, "-n", "--configfile",
                    str(demo_run / "test.yaml"), config).stdout  # fmt: skip
    stats = job_stats(out)
    assert stats["classifier"] == 1 and stats["slices"] == 1 and stats["slices_across"] == 1
    # no embedding, reduce or probe job; the atlas (its column) and what reads it rerun
    assert set(stats) <= {"classifier", "slices", "slices_across", "atlas", "disagreement",
                          "summary", "all"}, stats  # fmt: skip


@pytest.mark.parametrize(
    "change, message",
    [
        ({"row": 4, "value": "n/a"}, "line 6, column 'p_cardio': score 'n/a' is not a finite"),
        ({"row": 7, "id": "nope"}, "line 9: image id 'nope' is not in the manifest"),
        ({"drop": 3}, "1 of the 300 sampled images have no row"),
        ({"finding": "cardio"}, "classifiers.broken.findings: 'cardio' is not a finding"),
    ],
)  # fmt: skip
def test_a_broken_classifier_stops_the_plan_before_any_job(repo, demo_run, change, message):
    preds = planted_predictions(demo_run, "random").astype({"p_cardio": object})
    if "value" in change:
        preds.loc[change["row"], "p_cardio"] = change["value"]
    if "id" in change:
        preds.loc[change["row"], "case"] = change["id"]
    if "drop" in change:
        preds = preds.drop(index=change["drop"])
    config = with_classifier(demo_run, preds, "broken")
    if "finding" in change:
        cfg = yaml.safe_load(Path(config).read_text())
        cfg["classifiers"]["broken"]["findings"] = {change["finding"]: "p_cardio"}
        Path(config).write_text(yaml.safe_dump(cfg))
    before = (demo_run / "results/atlas/atlas.parquet").stat().st_mtime_ns
    proc = snakemake(repo, demo_run, "-n", "--configfile",
                     str(demo_run / "test.yaml"), config, check=False)  # fmt: skip
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in said, said[-2000:]
    assert "stopped before any job" in said
    assert (demo_run / "results/atlas/atlas.parquet").stat().st_mtime_ns == before


def test_a_planted_classifier_is_caught_where_the_maps_show_its_stratum(repo, demo_run, tmp_path):
    """A copy of the demo run, a vendor's classifier added as a user would: it is wrong on the
    planted outlier films only (no column names them). Its slice is flagged, its images are
    those films, the atlas lists it, and the leads name it; errors at random flag nothing."""
    from cxratlas.slices.leads import error_slice_leads

    run = tmp_path / "run"
    shutil.copytree(demo_run, run, symlinks=True)
    config = with_classifier(run, planted_predictions(run, "planted"))
    snakemake(repo, run, "--configfile", str(run / "test.yaml"), config)
    table = pd.read_parquet(run / "results/analysis/slices/slices.parquet")
    members = pd.read_parquet(run / "results/analysis/slices/members.parquet")
    assert set(table["classifier"]) == {"vendor"}  # a classifiers section replaces the probes
    planted = set(truth(run).index[truth(run)["gt_outlier"] == 1])
    flagged = table[table["flagged"]]
    precision = {}
    for r in flagged.itertuples():
        own = members[(members["model"] == r.model) & (members["slice"] == r.slice)]
        top = own.sort_values("typicality", ascending=False)["image_id"].head(10)
        precision[(r.model, r.slice)] = np.mean([i in planted for i in top])
    assert precision and max(precision.values()) >= 0.8, flagged
    iso = pd.read_parquet(run / "results/analysis/slices/isolation.parquet")
    best = iso[iso["rank"] == 1].iloc[0]
    assert best["errors_isolated"] > 0.3 and best["slices_flagged"] >= 1
    atlas = pq.read_table(run / "results/atlas/atlas.parquet").to_pandas()
    column = f"slices_vendor_{best['model']}"
    listed = set(atlas.loc[atlas[column].map(len) > 0, "image_id"])
    assert len(listed & planted) >= 0.5 * len(planted & set(atlas["image_id"]))
    leads = error_slice_leads(table, members)
    assert leads and all(set(x.images) for x in leads)
    assert max(np.mean([i in planted for i in x.images]) for x in leads) >= 0.8
    # and the summary ranks them with the other leads
    ranked = pd.read_parquet(run / "results/summary/leads.parquet")
    assert (ranked["kind"] == "error_slice").any() and ranked.loc[
        ranked["kind"] == "error_slice", "title"
    ].str.contains("vendor fails on").all()
    # the same run with errors at random: nothing below BH 0.05
    config = with_classifier(run, planted_predictions(run, "random"))
    snakemake(repo, run, "--configfile", str(run / "test.yaml"), config)
    table = pd.read_parquet(run / "results/analysis/slices/slices.parquet")
    assert (table["status"] == "scored").sum() > 5 and not (table["p_adj"] < 0.05).any()
