"""Seed-model kinds through Snakemake: tiny models of the real classes, a precomputed import,
the cross-model intersection, and a sixth entry of an existing kind planned alone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from workflow_runs import ANALYSIS, DEFAULT_MODELS, job_stats, slice_jobs, snakemake

from cxratlas.io import embedding_table, read_embeddings, write_parquet
from cxratlas.testing import tiny_models

pytestmark = pytest.mark.workflow


def _config(workdir, models: dict) -> None:
    cfg = {
        "dataset": {"demo": {"n_images": 60, "seed": 5, "outlier_fraction": 0.05}},
        "sample": {"n": 60},
        "extract": {"shard_size": 30, "num_workers": 0, "decode_cache": 128},
        "reduce": {"cluster": {"min_cluster_size": 5}},
        "models": models,
    }
    (workdir / "test.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def seed_run(repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("seedwf")
    tiny = workdir / "tiny"
    seed = yaml.safe_load((repo / "config/models/seed.yaml").read_text())["models"]
    mii, davit_args = tiny_models.medimageinsight(tiny / "mii")
    models = {
        "rad_dino": {**seed["rad_dino"], "weights": str(tiny_models.rad_dino(tiny / "rad"))},
        "medimageinsight": {
            **seed["medimageinsight"],
            "weights": str(mii),
            "model_args": davit_args,
            "preprocess": {**seed["medimageinsight"]["preprocess"], "size": 96},
        },
        "biomedclip": {**seed["biomedclip"], "weights": str(tiny_models.biomedclip(tiny / "bc"))},
        "cxr_foundation": {"kind": "precomputed", "source": str(workdir / "precomputed.parquet")},
    }
    for entry in models.values():
        entry.pop("revision", None)  # local folders
        entry.pop("sha256", None)  # tiny stand-ins, not the release's file
    _config(workdir, models)
    # The precomputed source covers 54 of the 60 sampled images, one of them with a NaN.
    # the plan draws the sample before any job; a run (of ingest alone) writes it down
    snakemake(repo, workdir, "--until", "ingest")
    ids = pd.read_parquet(workdir / "results/sample/sample.parquet")["image_id"].tolist()
    covered = ids[:54]
    vectors = np.random.default_rng(0).normal(size=(54, 24)).astype(np.float32)
    vectors[3, 5] = np.nan
    write_parquet(embedding_table(covered, vectors), workdir / "precomputed.parquet")
    snakemake(repo, workdir)
    return workdir, models, ids, covered


def test_each_seed_kind_wrote_its_dimension(seed_run):
    workdir, _, ids, _ = seed_run
    dims = {"rad_dino": 32, "medimageinsight": 8, "biomedclip": 16}
    for model, dim in dims.items():
        got, X, meta = read_embeddings(workdir / f"results/embeddings/{model}.parquet")
        assert sorted(got) == sorted(ids) and X.shape == (60, dim) and X.dtype == np.float32
        assert np.isfinite(X).all() and X.std() > 0
        assert meta["model"] == model and meta["dtype"] == "float32"  # CPU run
        rep = json.loads((workdir / f"results/embeddings/{model}/shard-0.report.json").read_text())
        assert rep["embedded"] == 30 and rep["inference_s"] > 0 and rep["read_s"] > 0
    _, X, _ = read_embeddings(workdir / "results/embeddings/medimageinsight.parquet")
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-4)  # UniCL normalises


def test_images_were_decoded_once_per_shard_and_conversion(seed_run):
    """Two 8-bit conversions in use: the display one (thumbnails, RAD-DINO, BiomedCLIP) and
    MedImageInsight's 1st-99th percentile: one decode cache each, every image once in each."""
    from cxratlas.embed.models import intensity_of
    from cxratlas.ingest.intensity import DISPLAY

    workdir, models, ids, _ = seed_run
    want = {DISPLAY.key, intensity_of("medimageinsight", models["medimageinsight"]).key}
    folders = sorted(p.name for p in (workdir / "results/decoded").iterdir())
    assert sorted(want) == folders and len(want) == 2
    for key in folders:
        decoded = pd.concat(
            [pd.read_parquet(workdir / f"results/decoded/{key}/shard-{s}.parquet") for s in (0, 1)]
        )
        assert sorted(decoded["image_id"]) == sorted(ids) and decoded["error"].isna().all()
    assert len(list((workdir / "logs/decode").glob("*/shard-*.log"))) == 4


def test_precomputed_import_reports_missing_and_nan(seed_run):
    workdir, _, ids, covered = seed_run
    got, X, meta = read_embeddings(workdir / "results/embeddings/cxr_foundation.parquet")
    assert set(got) == set(covered) - {covered[3]} and X.shape == (53, 24)
    reports = [
        json.loads(
            (workdir / f"results/embeddings/cxr_foundation/shard-{s}.report.json").read_text()
        )
        for s in (0, 1)
    ]
    assert sum(r["missing"] for r in reports) == 6
    skipped = [s for r in reports for s in r["skipped"]]
    assert [s["image_id"] for s in skipped] == [covered[3]] and "NaN/inf" in skipped[0]["reason"]


def test_atlas_keeps_the_images_every_model_covers(seed_run):
    workdir, models, _, covered = seed_run
    atlas = pq.read_table(workdir / "results/atlas/atlas.parquet")
    assert sorted(atlas.column("image_id").to_pylist()) == sorted(set(covered) - {covered[3]})
    for model in models:
        assert f"x_{model}" in atlas.column_names
    summary = json.loads((workdir / "results/atlas/summary.json").read_text())
    assert summary["dropped"] == 7 and summary["models"]["cxr_foundation"]["embedded"] == 53
    assert summary["models"]["rad_dino"]["embedded"] == 60


def test_a_sixth_entry_of_a_known_kind_plans_only_its_jobs(repo, seed_run):
    workdir, models, _, _ = seed_run
    seed = yaml.safe_load((repo / "config/models/seed.yaml").read_text())["models"]
    folder, xray = tiny_models.chexagent_2(workdir / "cx")
    chexagent = {
        **seed["chexagent"],
        "weights": str(folder),
        "config_from": {"weights": str(xray)},
    }
    chexagent.pop("revision")
    _config(workdir, {**models, "chexagent": chexagent})
    out = snakemake(repo, workdir, "-n").stdout
    assert job_stats(out) == {
        "embed_shard": 2,
        "merge_embeddings": 1,
        "reduce": 1,
        "atlas": 1,
        "all": 1,
        **ANALYSIS,
        **slice_jobs(*DEFAULT_MODELS, *models, "chexagent"),
    }
    for model in models:
        assert f"output: results/embeddings/{model}/shard" not in out  # no job for it


def test_the_example_dataset_config_plans_the_seed_models(repo, tmp_path):
    """config/models/seed.yaml + config/examples/mimic-cxr-jpg.yaml, with the manifest and the
    embeddings folder pointed at local stand-ins: the plan has every model's shards."""
    (tmp_path / "meta.csv").write_text(
        "dicom_id,subject_id,study_id,ViewPosition\na,10000032,50414267,PA\n"
    )
    (tmp_path / "labels.csv").write_text("subject_id,study_id,Edema\n10000032,50414267,1.0\n")
    (tmp_path / "split.csv").write_text("dicom_id,study_id,subject_id,split\na,5,1,train\n")
    (tmp_path / "emb").mkdir()
    image = tmp_path / "files/p10/p10000032/s50414267/a.jpg"  # the release's layout
    image.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(image)
    local = {
        "dataset": {
            "manifest": str(tmp_path / "meta.csv"),
            "labels": str(tmp_path / "labels.csv"),
            "split": str(tmp_path / "split.csv"),
            "image_root": str(tmp_path),
        },
        "models": {"cxr_foundation": {"source": str(tmp_path / "emb")}},
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(local))
    proc = snakemake(
        repo,
        tmp_path,
        "-n",
        "--configfile",
        str(repo / "config/models/seed.yaml"),
        str(repo / "config/examples/mimic-cxr-jpg.yaml"),
        str(tmp_path / "test.yaml"),
    )
    out = proc.stdout
    stats = job_stats(out)
    models = 6 + 1 + 2  # seed, precomputed, the default config's pixel baselines
    # sample.n is 50,000 but the stand-in holds one image: one shard each, never 10 empty ones;
    # one decode job per 8-bit conversion in use (display, Google's, Microsoft's)
    assert stats["embed_shard"] == models and stats["decode_shard"] == 3
    assert stats["reduce"] == models and stats["merge_embeddings"] == models
    seed = yaml.safe_load((repo / "config/models/seed.yaml").read_text())["models"]
    for name in seed:
        assert f"results/embeddings/{name}/shard-0.parquet" in out
    # the plan names every entry that is not pinned to a commit, before any job
    said = proc.stdout + proc.stderr
    for name, entry in seed.items():
        assert (f"model {name!r}: weights {entry['weights']} is not pinned" in said) == (
            not entry.get("revision")
        ), name
    assert "shard-1.parquet" not in out
