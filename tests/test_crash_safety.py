"""A run killed mid-way (SIGKILL to Snakemake and every job, as a node failure does) leaves only
complete files, and the resumed run ends with the same sample and shard contents as a run that
was never interrupted."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from workflow_runs import SNAKEMAKE, write_config

pytestmark = pytest.mark.workflow


def _cmd(repo, workdir, *extra):
    return [*SNAKEMAKE, "-s", str(repo / "Snakefile"), "-d", str(workdir),
            "--cores", "2", "--configfile", str(workdir / "test.yaml"), *extra]  # fmt: skip


def _shards(workdir):
    out = {}
    for path in sorted((workdir / "results/embeddings").glob("*/shard-*.parquet")):
        t = pq.read_table(path)
        out[str(path.relative_to(workdir))] = (
            t.column("image_id").to_pylist(),
            np.asarray(t.column("embedding").to_pylist(), np.float32),
        )
    return out


def test_killed_run_leaves_complete_files_and_resumes_to_the_same_result(repo, demo_run, tmp_path):
    clean, killed = demo_run, tmp_path  # the run never interrupted: the shared demo run
    write_config(killed)  # the same config

    proc = subprocess.Popen(_cmd(repo, killed), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 600
    shards = "results/embeddings/*/shard-*.parquet"
    while time.time() < deadline and len(list(killed.glob(shards))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its running jobs, mid-write or not
    proc.wait()
    assert not (killed / "results/atlas/atlas.parquet").exists(), "killed too late to test"
    # whatever exists is complete: every Parquet opens and every shard matches its report
    for path in killed.glob("results/**/*.parquet"):
        pq.read_table(path)
    for path in killed.glob("results/embeddings/*/shard-*.parquet"):
        report = path.with_name(path.name.replace(".parquet", ".report.json"))
        if report.exists():
            r = json.loads(report.read_text())
            assert pq.read_metadata(path).num_rows == r["embedded"] + r["reused"] - r["pruned"]
    # a write cut short leaves only a hidden `.<name>.<random>.tmp`, which no rule names as output
    for path in killed.glob("results/**/*"):
        if path.is_file() and path.suffix == ".tmp":
            assert path.name.startswith("."), path

    subprocess.run(_cmd(repo, killed, "--unlock"), check=True, capture_output=True, timeout=300)
    subprocess.run(_cmd(repo, killed, "--rerun-incomplete"), check=True, capture_output=True,
                   timeout=900)  # fmt: skip
    sample = "results/sample/sample.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(clean / sample), pd.read_parquet(killed / sample))
    a, b = _shards(clean), _shards(killed)
    assert a.keys() == b.keys() and len(a) == 6
    for key in a:
        assert a[key][0] == b[key][0] and np.array_equal(a[key][1], b[key][1]), key
    atlas = [pd.read_parquet(d / "results/atlas/atlas.parquet") for d in (clean, killed)]
    assert atlas[0]["image_id"].tolist() == atlas[1]["image_id"].tolist()
