"""Snakemake end to end on phantoms in a temp dir, checked against the planted truth."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from sklearn.metrics import adjusted_rand_score, roc_auc_score

pytestmark = pytest.mark.workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(repo: Path, workdir: Path, *args: str, check: bool = True):
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(repo / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",
        "--configfile",
        str(workdir / "test.yaml"),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def write_config(workdir: Path, extra: dict | None = None) -> None:
    cfg = {
        "dataset": {"demo": {"n_images": 300, "seed": 11, "outlier_fraction": 0.05}},
        "sample": {"n": 300},
        "extract": {"shard_size": 100},
    }
    for key, value in (extra or {}).items():
        cfg.setdefault(key, {}).update(value)
    (workdir / "test.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def demo_run(repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf")
    write_config(workdir)
    snakemake(repo, workdir)
    return workdir


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


def test_reduce_summaries_report_recall_trust_and_memory(demo_run):
    for model in ("pixels_32", "pixels_64_pca"):
        summary = json.loads((demo_run / f"results/reduce/{model}/summary.json").read_text())
        assert summary["backend"] == "cpu" and summary["n"] == 300
        assert summary["knn"]["method"] == "exact" and summary["knn"]["recall"] == 1.0
        assert 0.8 < summary["trustworthiness"] <= 1.0
        mem = summary["memory"]
        assert mem["matrix_mib"] == pytest.approx(300 * summary["dim"] * 4 / 2**20)
        assert mem["peak_above_start_mib"] > 0 and mem["peak_over_matrix"] > 0


def test_second_run_has_nothing_to_do(repo, demo_run):
    out = snakemake(repo, demo_run, "-n").stdout
    assert "Nothing to be done" in out


def test_dry_run_plans_every_shard_and_a_new_model_alone(repo, tmp_path):
    write_config(tmp_path)
    out = snakemake(repo, tmp_path, "-n").stdout
    assert out.count("rule embed_shard:") == 6
    for shard in range(3):
        assert f"results/embeddings/pixels_32/shard-{shard}.parquet" in out
    # after a run, adding a model plans only that model's jobs plus the atlas
    snakemake(repo, tmp_path)
    write_config(tmp_path, {"models": {"pixels_16": {"kind": "pixels", "image_size": 16}}})
    out = snakemake(repo, tmp_path, "-n").stdout
    stats = _job_stats(out)
    assert stats == {"embed_shard": 3, "merge_embeddings": 1, "reduce": 1, "atlas": 1, "all": 1}
    assert "pixels_32/shard" not in out and "pixels_64_pca/shard" not in out


def _job_stats(out: str) -> dict[str, int]:
    lines = out.split("Job stats:")[1].splitlines()[3:]
    stats = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


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
