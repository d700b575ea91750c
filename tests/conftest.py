from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CXR_REAL = REPO.parent / "shared" / "cxr-real"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# checkpoint hashes recorded at a first load (embed/models/weights.py) stay out of ~/.cache
os.environ.setdefault("CXRATLAS_HOME", tempfile.mkdtemp(prefix="cxratlas-home-"))
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # share the cores between the workers (`make test`)
    # set before numpy and torch load: a BLAS or OpenMP pool per core in every worker spins on
    # cores the other worker needs (it doubled the CPU time of a logistic-regression fit here)
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)


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
    results must work on a copy. Every figure it saves is layout-checked into
    `figure-checks/` (`cxratlas.figure_check`; test_workflow reads them)."""
    from workflow_runs import snakemake, write_config

    from cxratlas.figure_check import CHECKS_ENV

    workdir = tmp_path_factory.mktemp("wf")
    write_config(workdir)
    snakemake(repo, workdir, env={CHECKS_ENV: str(workdir / "figure-checks")})
    return workdir


# `make test` runs on pytest-xdist workers (`-n 3 --dist loadgroup`). A worker builds its own
# module and session fixtures, so tests that share one are kept on one worker: a module's tests
# form one group, and every module that reads a shared workflow run joins that run's group (built
# once, not once a worker). The Slurm tests go first: their worker mostly waits on the cluster
# while the others compute; then the shared run's group, the other groups that run Snakemake,
# and the unit tests last: short ones fill in at the end, so the workers finish together.
SHARED_RUNS = ("demo_run",)


def _rank(item) -> int:
    if item.get_closest_marker("slurm"):
        return 0
    if any(run in item.fixturenames for run in SHARED_RUNS):
        return 1  # the largest group: several modules
    return 2 if item.get_closest_marker("workflow") else 3


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    group = {item.module.__name__: item.module.__name__ for item in items}
    for item in items:
        for run in SHARED_RUNS:
            if run in item.fixturenames:
                group[item.module.__name__] = run
    rank = {}
    for item in items:
        name = group[item.module.__name__]
        item.add_marker(pytest.mark.xdist_group(name))
        rank[name] = min(rank.get(name, 3), _rank(item))
    # stable: a module's tests stay together (its fixtures are built once) and in their order
    items.sort(key=lambda item: rank[group[item.module.__name__]])


def pytest_collection_finish(session):
    items = session.items  # a worker's, after xdist named each one's group (`<test>@<group>`)
    if session.config.getoption("loadgroup", False) and items and "@" not in items[0].nodeid:
        # grouping that silently stops builds each shared run once a worker: fail instead
        raise pytest.UsageError(
            "pytest-xdist did not group the tests (pytest-xdist#1386 on "
            "pytest 9.2): install the pytest that pyproject.toml pins"
        )
