from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CXR_REAL = REPO.parent / "shared" / "cxr-real"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """120 phantoms with their manifest (planted truth included)."""
    from cxratlas.demo.phantom import generate_demo

    out = tmp_path_factory.mktemp("demo")
    df = generate_demo(out, n_images=120, seed=3, outlier_fraction=0.1, progress=False)
    return out, df


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory) -> Path:
    """A random-weight Dinov2Model + BitImageProcessor saved like microsoft/rad-dino."""
    from cxratlas.testing.tiny_models import rad_dino

    return rad_dino(tmp_path_factory.mktemp("tiny-rad-dino"))


@pytest.fixture(scope="session")
def demo_run(repo, tmp_path_factory) -> Path:
    """One finished 300-image demo run (two models, three shards each), shared by every module
    that only reads it or dry-runs on it (test_workflow, test_viewer): a test that changes its
    results must work on a copy."""
    from workflow_runs import snakemake, write_config

    workdir = tmp_path_factory.mktemp("wf")
    write_config(workdir)
    snakemake(repo, workdir)
    return workdir
