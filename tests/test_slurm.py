"""The workflow through `snakemake --profile profiles/slurm` on a real single-node Slurm cluster.

Three runs share one workdir (module fixtures, each run once): a clean run of two models, then a
model added while shard 1's images are gone (a node without the mount) and its fit job is
scancel'd, then the same with the images back. The test profile packs 4 shards a job (embedding
and thumbnails).

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
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from workflow_runs import ANALYSIS, DEFAULT_MODELS, job_stats, slice_jobs

ONE_SHARD = {"embed_shard": 1, "merge_embeddings": 1, "reduce": 1, "atlas": 1, "all": 1}

REPO = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get("CXR_ATLAS_REQUIRE_SLURM") == "1"
SHARDS, PER_JOB = 6, 4  # 60 images at 10 a shard; tests/slurm/profile packs 4 shards a job


def embed_jobs(jobs: pd.DataFrame, model: str) -> pd.DataFrame:
    """The model's embedding jobs: a group job's comment is rule_<group>_<rule>."""
    return jobs[jobs["comment"] == f"rule_embed_{model}_embed_shard"]


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
            "extract": {"shard_size": 10},
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
        fmt = "JobIDRaw,State,ReqTRES%80,AllocTRES%80,TimelimitRaw,Comment%200,WorkDir%300"
        proc = subprocess.run(
            ["sacct", "-X", "--parsable2", "--noheader", f"--format={fmt}",
             "--starttime", self.since, "--endtime", "now"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows = [line.split("|") for line in proc.stdout.splitlines() if line]
        cols = ["id", "state", "req", "alloc", "minutes", "comment", "workdir"]
        df = pd.DataFrame(rows, columns=cols)
        return df[df["workdir"] == str(self.workdir)].reset_index(drop=True)


def _explain(proc) -> str:
    return f"rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"


def _fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _shards(cluster: Cluster, model: str) -> dict[int, tuple[str, int]]:
    emb = cluster.workdir / "results/embeddings" / model
    return {int(p.stem.split("-")[1]): _fingerprint(p) for p in emb.glob("shard-*.parquet")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Run 1: the two default models, clean, with the executor's efficiency report."""
    from cxratlas.demo.phantom import generate_demo

    data = tmp_path_factory.mktemp("slurm-data")
    generate_demo(data, n_images=60, seed=5, progress=False)
    c = Cluster(tmp_path_factory.mktemp("slurm-run"), data)
    c.write_config()
    proc = c.run("--slurm-efficiency-report",
                 "--slurm-efficiency-report-path", str(c.workdir / "efficiency"))  # fmt: skip
    assert proc.returncode == 0, _explain(proc)
    c.first_jobs = c.jobs()
    return c


NEW = "pixels_16_pca"  # a model with a fit job (PCA) before its shards


@pytest.fixture(scope="module")
def broken(cluster):
    """Run 2: NEW added while shard 1's images are gone, and its fit job scancel'd mid-run."""
    sample = pd.read_parquet(cluster.workdir / "results/sample/sample.parquet")
    shard1 = [Path(p) for p in sample.loc[sample["shard"] == 1, "path"]]
    hidden = cluster.data / "hidden"
    hidden.mkdir()
    cluster.models = {NEW: {"kind": "pixels", "image_size": 16, "pca": 8}}
    cluster.write_config()
    cluster.before = {m: _shards(cluster, m) for m in ("pixels_32", "pixels_64_pca")}
    for p in shard1:  # planted fault: shard 1's images vanish (a node without the mount)
        p.rename(hidden / p.name)
    try:
        run = subprocess.Popen(cluster.command(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
        killed = _cancel_when_running(run, f"rule_fit_model_wildcards_{NEW}")
        out, _ = run.communicate(timeout=900)
    finally:
        for p in shard1:
            (hidden / p.name).rename(p)
    cluster.broken = SimpleNamespace(rc=run.returncode, out=out, killed=killed,
                                     jobs=cluster.jobs(), shards=_shards(cluster, NEW))  # fmt: skip
    return cluster


def _cancel_when_running(run: subprocess.Popen, comment: str) -> str | None:
    deadline = time.time() + 600
    while time.time() < deadline and run.poll() is None:
        q = subprocess.run(["squeue", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True)
        for line in q.stdout.splitlines():
            job, state, job_comment = line.split("|", 2)
            if job_comment == comment and state == "RUNNING":
                subprocess.run(["scancel", job], check=True)
                return job
        time.sleep(0.3)
    return None


@pytest.fixture(scope="module")
def fixed(broken):
    """Run 3: the images are back; first the plan, then the run."""
    broken.plan = broken.run("-n")
    proc = broken.run()
    assert proc.returncode == 0, _explain(proc)
    return broken


def test_shards_are_packed_into_few_gpu_jobs(cluster):
    jobs = cluster.first_jobs
    for model in ("pixels_32", "pixels_64_pca"):
        embed = embed_jobs(jobs, model)
        # 6 shards at 4 a job: ceil(6 / 4) = 2 Slurm jobs, each given one (stand-in) GPU
        assert len(embed) == -(-SHARDS // PER_JOB), jobs
        assert (embed["state"] == "COMPLETED").all(), embed
        assert embed["alloc"].str.contains("gres/gpu=1").all(), embed
        # the shards run in series: memory of one shard, runtime the sum of the shards' 10 min
        assert embed["req"].str.contains("mem=1500M").all(), embed
        assert sorted(embed["minutes"].astype(int)) == [10 * (SHARDS - PER_JOB), 10 * PER_JOB]
        for shard in range(SHARDS):  # each shard log names the Slurm job that ran it
            log = (cluster.workdir / f"logs/embed/{model}/shard-{shard}.log").read_text()
            assert any(f"slurm job {i}" in log for i in embed["id"]), log[:300]
    # thumbnails are packed as well, side by side: a job asks for a CPU per shard in it
    thumbs = jobs[jobs["comment"] == "rule_thumbnails_thumbnails"]
    assert len(thumbs) == -(-SHARDS // PER_JOB), jobs
    assert (thumbs["state"] == "COMPLETED").all(), thumbs
    cpus = sorted(thumbs["alloc"].str.extract(r"cpu=(\d+)")[0].astype(int))
    assert cpus == [SHARDS - PER_JOB, PER_JOB], thumbs
    assert not thumbs["alloc"].str.contains("gres/gpu").any(), thumbs
    others = jobs[~jobs["comment"].str.startswith("rule_embed_")]
    assert not others["alloc"].str.contains("gres/gpu").any(), others
    rules = {c.split("_wildcards")[0] for c in jobs["comment"]}
    assert {"rule_ingest", "rule_merge_embeddings", "rule_reduce", "rule_atlas",
            "rule_summary"} <= rules  # fmt: skip
    assert "rule_sample" not in rules  # the plan drew the sample before any job
    atlas = pq.read_table(cluster.workdir / "results/atlas/atlas.parquet")
    assert atlas.num_rows == 60


def test_the_efficiency_report_covers_every_job(cluster):
    """`--slurm-efficiency-report` writes one CSV from sacct: CPU and memory efficiency per job
    step, named by rule (a group job by its group and rule)."""
    (report,) = (cluster.workdir / "efficiency").glob("efficiency_report_*.csv")
    df = pd.read_csv(report)
    assert {"CPU Efficiency (%)", "Memory Usage (%)", "RuleName"} <= set(df.columns)
    embed = df[df["RuleName"].str.startswith("rule_embed_")]
    assert len(embed) >= 4, df[["JobName", "RuleName"]]  # the four packed jobs' steps at least
    cpu = df["CPU Efficiency (%)"]
    assert ((cpu > 0) & (cpu <= 100 * 4)).all(), df  # sacct's TotalCPU over elapsed x CPUs
    assert (df["RequestedMem_MB"] > 0).all()  # the profile's mem_mb, the Memory Usage base


def test_a_failed_shard_costs_only_itself(broken):
    b = broken.broken
    assert b.rc != 0, b.out[-4000:]
    assert "Error in rule embed_shard" in b.out and "10 of 10 images unreadable" in b.out
    # its job's other shards ran on and were kept (keep-going in the group, keep-incomplete)
    assert sorted(b.shards) == [0, 2, 3, 4, 5], b.out[-4000:]
    assert not list((broken.workdir / f"results/embeddings/{NEW}").glob("*shard-1*"))
    # the job with shard 1 was retried (the test profile: once) with memory scaled by attempt
    embed = embed_jobs(b.jobs, NEW)
    failed = embed[embed["state"] == "FAILED"]
    assert sorted(failed["req"].str.extract(r"mem=(\d+)M")[0].astype(int)) == [1500, 3000]
    assert (embed["state"] == "COMPLETED").sum() == 1, embed  # the other job, once
    # the models that were there are untouched
    for model, shards in broken.before.items():
        assert _shards(broken, model) == shards


def test_a_cancelled_job_is_detected_and_resubmitted(broken):
    b = broken.broken
    assert b.killed, f"never saw {NEW}'s fit job running:\n{b.out[-3000:]}"
    assert b.killed in b.out and "CANCELLED" in b.out, b.out[-4000:]
    fit = b.jobs[b.jobs["comment"] == f"rule_fit_model_wildcards_{NEW}"]
    states = sorted(fit["state"].str.split().str[0])  # sacct: "CANCELLED by <uid>"
    assert states == ["CANCELLED", "COMPLETED"], fit  # not hung: submitted again


def test_the_next_run_plans_and_runs_only_the_failed_shard(fixed):
    assert fixed.plan.returncode == 0, _explain(fixed.plan)
    slices = slice_jobs(*DEFAULT_MODELS, *fixed.models)  # every probe changes
    assert job_stats(fixed.plan.stdout) == {**ONE_SHARD, **ANALYSIS, **slices}
    assert f"results/embeddings/{NEW}/shard-1.parquet" in fixed.plan.stdout
    now = _shards(fixed, NEW)
    assert {s: now[s] for s in fixed.broken.shards} == fixed.broken.shards  # bit for bit
    assert pq.read_table(fixed.workdir / f"results/embeddings/{NEW}/shard-1.parquet").num_rows == 10
    atlas = pq.read_table(fixed.workdir / "results/atlas/atlas.parquet")
    assert {"x_pixels_32", f"x_{NEW}"} <= set(atlas.schema.names)


def test_dry_run_plans_a_new_model_alone_in_packed_jobs(fixed):
    fixed.models = {**fixed.models, "pixels_8": {"kind": "pixels", "image_size": 8}}
    fixed.write_config()
    proc = fixed.run("-n")
    assert proc.returncode == 0, _explain(proc)
    new_model = {"embed_shard": SHARDS, "merge_embeddings": 1, "reduce": 1, "atlas": 1, "all": 1}
    slices = slice_jobs(*DEFAULT_MODELS, *fixed.models)
    assert job_stats(proc.stdout) == {**new_model, **ANALYSIS, **slices}
    for shard in range(SHARDS):
        assert f"results/embeddings/pixels_8/shard-{shard}.parquet" in proc.stdout
    assert proc.stdout.count("Group job embed_pixels_8 ") == -(-SHARDS // PER_JOB)
    for old in ("pixels_32", NEW):  # no job writes an old model's shard
        assert f"output: results/embeddings/{old}/shard" not in proc.stdout


def test_test_profile_only_changes_partition_sizes_polling_retries_and_packing():
    main = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    test = yaml.safe_load((REPO / "tests/slurm/profile/config.yaml").read_text())
    sizes = {"slurm_partition", "mem_mb", "runtime", "cpus_per_task", "cpus_per_gpu"}
    polling = {"seconds-between-status-checks", "slurm-init-seconds-before-status-checks"}
    assert (
        set(test) <= {"default-resources", "set-resources", "group-components", "retries"} | polling
    )
    assert 1 <= test["retries"] <= main["retries"]
    assert set(test["default-resources"]) <= sizes
    assert set(test["set-resources"]) == set(main["set-resources"])
    for rule, res in main["set-resources"].items():
        kept = {k: v for k, v in res.items() if k not in sizes}
        assert kept == {k: v for k, v in test["set-resources"][rule].items() if k not in sizes}
    assert main["set-resources"]["embed_shard"]["gpu"] == 1
    assert main["executor"] == "slurm" and main["retries"] >= 1 and main["keep-going"]
    # packing: shards of one model per job, one GPU a job, failed jobs' finished shards kept
    assert main["groups"] == ["embed_shard=embed_{model}", "thumbnails=thumbnails"]
    assert main["resources"] == ["gpu=1"] and main["set-resource-scopes"] == ["gpu=local"]
    assert main["keep-incomplete"] and "slurm-array-jobs" not in main
