"""The workflow through `snakemake --profile profiles/slurm` on a real single-node Slurm cluster.

Start the cluster first (CI does): `bash tests/slurm/start-slurm.sh`. Without a responding
cluster these tests skip, unless CXR_ATLAS_REQUIRE_SLURM=1 (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from test_workflow import ANALYSIS, _job_stats

ONE_SHARD = {"embed_shard": 1, "merge_embeddings": 1, "reduce": 1, "atlas": 1, "all": 1}

REPO = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get("CXR_ATLAS_REQUIRE_SLURM") == "1"
EMBED = "rule_embed_shard"


def _slurm_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


if not _slurm_up():
    if REQUIRED:
        raise RuntimeError("CXR_ATLAS_REQUIRE_SLURM=1 but no Slurm cluster responds to sinfo")
    pytest.skip("no Slurm cluster (bash tests/slurm/start-slurm.sh)", allow_module_level=True)

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]


class Cluster:
    """One workdir run through the Slurm profile, plus what sacct knows of its jobs."""

    def __init__(self, workdir: Path, data: Path):
        self.workdir = workdir
        self.data = data
        self.since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
        self.models = {}

    def write_config(self) -> None:
        cfg = {
            "dataset": {
                "preset": "generic",
                "manifest": str(self.data / "manifest.csv"),
                "image_root": str(self.data),
            },
            "sample": {"n": 60, "stratify_by": []},
            "extract": {"shard_size": 20},
        }
        if self.models:
            cfg["models"] = self.models
        (self.workdir / "test.yaml").write_text(yaml.safe_dump(cfg))

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
            "-d", str(self.workdir), "--configfile", str(self.workdir / "test.yaml"),
            "--profile", str(REPO / "profiles/slurm"),
            "--profile", str(REPO / "tests/slurm/profile"), *args,
        ]  # fmt: skip

    def run(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        # SIGTERM does not stop a Slurm-executor run; subprocess' timeout sends SIGKILL.
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)

    def jobs(self) -> pd.DataFrame:
        """This test's Slurm jobs: id, state, requested TRES, the rule/wildcards comment."""
        fmt = "JobIDRaw,State,ReqTRES%80,AllocTRES%80,Comment%200,WorkDir%300"
        proc = subprocess.run(
            ["sacct", "-X", "--parsable2", "--noheader", f"--format={fmt}",
             "--starttime", self.since, "--endtime", "now"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows = [line.split("|") for line in proc.stdout.splitlines() if line]
        df = pd.DataFrame(rows, columns=["id", "state", "req", "alloc", "comment", "workdir"])
        return df[df["workdir"] == str(self.workdir)].reset_index(drop=True)


def _explain(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from cxratlas.demo.phantom import generate_demo

    data = tmp_path_factory.mktemp("slurm-data")
    generate_demo(data, n_images=60, seed=5, progress=False)
    c = Cluster(tmp_path_factory.mktemp("slurm-run"), data)
    c.write_config()
    # the executor's efficiency report, as the README tells users to ask for it
    proc = c.run("--slurm-efficiency-report",
                 "--slurm-efficiency-report-path", str(c.workdir / "efficiency"))  # fmt: skip
    assert proc.returncode == 0, _explain(proc)
    return c


def test_every_shard_ran_as_a_slurm_job_with_a_gpu(cluster):
    jobs = cluster.jobs()
    embed = jobs[jobs["comment"].str.startswith(EMBED)]
    # two default models x three shards, each its own Slurm job, each given one (stand-in) GPU
    assert len(embed) == 6, jobs
    assert (embed["state"] == "COMPLETED").all(), embed
    assert embed["alloc"].str.contains("gres/gpu=1").all(), embed
    others = jobs[~jobs["comment"].str.startswith(EMBED)]
    assert not others["alloc"].str.contains("gres/gpu").any(), others
    rules = {c.split("_wildcards")[0] for c in jobs["comment"]}
    assert {"rule_ingest", "rule_fit_model", "rule_thumbnails",
            "rule_merge_embeddings", "rule_reduce", "rule_atlas"} <= rules  # fmt: skip
    assert "rule_sample" not in rules  # the plan drew the sample before any job
    # each shard log names the Slurm job that wrote it
    for model in ("pixels_32", "pixels_64_pca"):
        for shard in range(3):
            log = (cluster.workdir / f"logs/embed/{model}/shard-{shard}.log").read_text()
            assert "slurm job" in log and any(f"slurm job {i}" in log for i in embed["id"])
    atlas = pq.read_table(cluster.workdir / "results/atlas/atlas.parquet")
    assert atlas.num_rows == 60


def test_the_efficiency_report_covers_every_job(cluster):
    """`--slurm-efficiency-report` writes one CSV from sacct: CPU and memory efficiency per job
    step, named by rule and wildcards."""
    (report,) = (cluster.workdir / "efficiency").glob("efficiency_report_*.csv")
    df = pd.read_csv(report)
    assert {"CPU Efficiency (%)", "Memory Usage (%)", "RuleName"} <= set(df.columns)
    embed = df[df["RuleName"].str.startswith(EMBED)]  # the comment: rule and wildcards
    assert len(embed) >= 6, df[["JobName", "RuleName"]]  # the six shard jobs' steps at least
    cpu = df["CPU Efficiency (%)"]
    assert ((cpu > 0) & (cpu <= 100 * 4)).all(), df  # sacct's TotalCPU over elapsed x CPUs
    assert (df["RequestedMem_MB"] > 0).all()  # the profile's mem_mb, the Memory Usage base


def test_failed_shard_is_reported_and_rerun_alone(cluster):
    sample = pd.read_parquet(cluster.workdir / "results/sample/sample.parquet")
    shard1 = [Path(p) for p in sample.loc[sample["shard"] == 1, "path"]]
    hidden = cluster.data / "hidden"
    hidden.mkdir()
    cluster.models = {"pixels_16": {"kind": "pixels", "image_size": 16}}
    cluster.write_config()
    for p in shard1:  # planted fault: shard 1's images vanish (a node without the mount)
        p.rename(hidden / p.name)
    try:
        proc = cluster.run()
    finally:
        for p in shard1:
            (hidden / p.name).rename(p)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, _explain(proc)
    assert "Error in rule embed_shard" in out and "20 of 20 images unreadable" in out
    emb = cluster.workdir / "results/embeddings/pixels_16"
    assert not list(emb.glob("*shard-1*")), list(emb.iterdir())  # no partial file of shard 1
    good = {s: _fingerprint(emb / f"shard-{s}.parquet") for s in (0, 2)}
    assert pq.read_table(emb / "shard-0.parquet").num_rows == 20
    # the retries ran with memory scaled by attempt (1500, 3000, 4500 MB)
    tries = cluster.jobs()
    tries = tries[tries["comment"].str.contains("pixels_16_1")]
    assert sorted(tries["req"].str.extract(r"mem=(\d+)M")[0].astype(int)) == [1500, 3000, 4500]
    assert set(tries["state"]) == {"FAILED"}

    plan = _job_stats(cluster.run("-n").stdout)
    assert plan == {**ONE_SHARD, **ANALYSIS}
    proc = cluster.run()
    assert proc.returncode == 0, _explain(proc)
    assert {s: _fingerprint(emb / f"shard-{s}.parquet") for s in (0, 2)} == good
    assert pq.read_table(emb / "shard-1.parquet").num_rows == 20


def test_cancelled_job_is_detected_and_recomputed_alone(cluster):
    cluster.models = {**cluster.models, "pixels_24": {"kind": "pixels", "image_size": 24}}
    cluster.write_config()
    target = "pixels_24_2"
    run = subprocess.Popen(
        cluster.command("--retries", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = None
    deadline = time.time() + 600
    while killed is None and time.time() < deadline and run.poll() is None:
        q = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True)
        for line in q.stdout.splitlines():
            job, state, comment = line.split("|", 2)
            if comment.endswith(target) and state == "RUNNING":
                subprocess.run(["scancel", job], check=True)
                killed = job
        time.sleep(0.3)
    out, _ = run.communicate(timeout=900)
    assert killed, f"never saw {target} running:\n{out[-3000:]}"
    assert run.returncode != 0, out[-3000:]
    assert killed in out and "CANCELLED" in out, out[-4000:]
    emb = cluster.workdir / "results/embeddings/pixels_24"
    assert not list(emb.glob("*shard-2*"))
    good = {s: _fingerprint(emb / f"shard-{s}.parquet") for s in (0, 1)}

    plan = _job_stats(cluster.run("-n").stdout)
    assert plan == {**ONE_SHARD, **ANALYSIS}
    proc = cluster.run()
    assert proc.returncode == 0, _explain(proc)
    assert {s: _fingerprint(emb / f"shard-{s}.parquet") for s in (0, 1)} == good
    atlas = pq.read_table(cluster.workdir / "results/atlas/atlas.parquet")
    assert {"x_pixels_16", "x_pixels_24"} <= set(atlas.schema.names)


def test_dry_run_plans_a_new_model_alone(cluster):
    cluster.models = {**cluster.models, "pixels_8": {"kind": "pixels", "image_size": 8}}
    cluster.write_config()
    proc = cluster.run("-n")
    assert proc.returncode == 0, _explain(proc)
    new_model = {"embed_shard": 3, "merge_embeddings": 1, "reduce": 1, "atlas": 1, "all": 1}
    assert _job_stats(proc.stdout) == {**new_model, **ANALYSIS}
    for shard in range(3):
        assert f"results/embeddings/pixels_8/shard-{shard}.parquet" in proc.stdout
    for old in ("pixels_32", "pixels_16"):  # no job writes an old model's shard
        assert f"output: results/embeddings/{old}/shard" not in proc.stdout


def test_test_profile_only_changes_partition_sizes_and_polling():
    main = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    test = yaml.safe_load((REPO / "tests/slurm/profile/config.yaml").read_text())
    sizes = {"slurm_partition", "mem_mb", "runtime", "cpus_per_task", "cpus_per_gpu"}
    polling = {"seconds-between-status-checks", "slurm-init-seconds-before-status-checks"}
    assert set(test) <= {"default-resources", "set-resources"} | polling
    assert set(test["default-resources"]) <= sizes
    assert set(test["set-resources"]) == set(main["set-resources"])
    for rule, res in main["set-resources"].items():
        kept = {k: v for k, v in res.items() if k not in sizes}
        assert kept == {k: v for k, v in test["set-resources"][rule].items() if k not in sizes}
    assert main["set-resources"]["embed_shard"]["gpu"] == 1
    assert main["executor"] == "slurm" and main["retries"] >= 1 and main["keep-going"]
