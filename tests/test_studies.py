"""Several studies, one folder each (README, "Several studies, one folder each"): started from
one place with `--directory`, a study writes results/, logs/, resources/ and .snakemake/ under
its own folder and nothing where Snakemake was started; both profiles plan there; the report
and `cxr-atlas view` take that folder's files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_runs import SNAKEMAKE, job_stats

pytestmark = pytest.mark.workflow

STUDY = "studies/my-study"


def _project(repo: Path, root: Path) -> Path:
    """Where a user starts Snakemake: profiles/ as in the repository, a study's config."""
    root.mkdir()
    (root / "profiles").symlink_to(repo / "profiles")
    cfg = {"dataset": {"demo": {"n_images": 60, "seed": 5, "outlier_fraction": 0.05}},
           "sample": {"n": 60}, "extract": {"shard_size": 30}}  # fmt: skip
    (root / "my-study.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _run(repo: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(repo / "Snakefile"), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_a_study_writes_only_under_its_own_folder(repo, tmp_path):
    project = _project(repo, tmp_path / "project")
    study = ["--configfile", "my-study.yaml", "--directory", STUDY]
    for profile in ("profiles/local", "profiles/slurm"):
        plan = _run(repo, project, "--profile", profile, *study, "-n")
        # 60 images in shards of 30: two shard jobs per model, planned in the study's folder
        assert job_stats(plan.stdout)["embed_shard"] == 4, plan.stdout
    # a real run of the first step: the plan's ledger, the manifest and the job's log
    _run(repo, project, "--profile", "profiles/local", *study, "results/manifest.parquet")
    folder = project / STUDY
    for path in ("results/manifest.parquet", "results/sample/plan.json", "logs/ingest.log",
                 "resources/demo/manifest.csv", ".snakemake/cxratlas"):  # fmt: skip
        assert (folder / path).exists(), path
    # where Snakemake was started: only what the user put there
    assert sorted(os.listdir(project)) == ["my-study.yaml", "profiles", "studies"]
    assert os.listdir(project / "studies") == ["my-study"]


def test_the_report_and_the_viewer_take_the_study_folder(repo, demo_run, tmp_path):
    """The shared demo run stands in for a finished study (a link: nothing of it is copied)."""
    project = tmp_path / "project"
    (project / "studies").mkdir(parents=True)
    (project / "studies" / "demo").symlink_to(demo_run)
    config = ["--configfile", str(demo_run / "test.yaml"), "--directory", "studies/demo"]
    _run(repo, project, *config, "--report", "study-report.html")  # as the README: a relative name
    assert (demo_run / "study-report.html").stat().st_size > 100_000
    assert sorted(os.listdir(project)) == ["studies"]  # the report went to the study's folder
    if not shutil.which("embedding-atlas", path=os.path.dirname(sys.executable)):
        if os.environ.get("CXR_ATLAS_REQUIRE_BROWSER"):
            pytest.fail("embedding-atlas is not installed (make setup installs it)")
        pytest.skip("needs embedding-atlas")
    atlas = "studies/demo/results/atlas/atlas.parquet"
    view = subprocess.run(
        [sys.executable, "-m", "cxratlas.cli", "view", atlas, "--model", "pixels_32", "--dry-run"],
        cwd=project, capture_output=True, text=True, check=True,
    )  # fmt: skip
    cmd = view.stdout.split()
    views = "studies/demo/results/atlas/views"
    assert cmd[1] == atlas
    assert cmd[cmd.index("--state") + 1] == f"{views}/pixels_32.state.json"
    assert cmd[cmd.index("--labels") + 1] == f"{views}/pixels_32.labels.parquet"
