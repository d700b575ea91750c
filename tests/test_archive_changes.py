"""An archive that changes, on ../shared/cxr-real with a user's own manifest (renamed columns, own
label names, a site column): 400 rows, then 40 more, then the same rows shuffled and exported as
Parquet, then 10 withdrawn. After each step: the embedding jobs that `-n` plans and the images
the shard reports count as embedded are exactly the new ones; unchanged vectors are
bit-identical; the atlas holds exactly the manifest's sampled rows. A dry run changes nothing
under results/, a second run started meanwhile is refused, and the withdrawn images are left in
no file under results/ or logs/."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import CXR_REAL
from workflow_runs import SNAKEMAKE, snakemake

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.real,
    pytest.mark.skipif(not (CXR_REAL / "metadata.csv").exists(), reason="no ../shared/cxr-real"),
]
MODELS = ("pixels_32", "pixels_64_pca")
OWN = {"image_id": "sop_uid", "file": "png", "patient_id": "mrn", "source_dataset": "hospital",
       "pneumonia": "pna", "effusion": "pleural_fluid", "view_position": "view"}  # fmt: skip
EMBED_JOBS = ("embed_shard", "thumbnails", "decode_shard", "fit_model")


def _rows() -> pd.DataFrame:
    src = pd.read_csv(CXR_REAL / "metadata.csv", dtype=str, keep_default_na=False)
    src = src.sample(frac=1, random_state=0).reset_index(drop=True).rename(columns=OWN)
    return src[[*OWN.values(), "sex"]]


def _config(workdir: Path, manifest: Path, name: str = "test.yaml") -> None:
    cfg = {
        "dataset": {
            "preset": "generic", "manifest": str(manifest), "image_root": str(CXR_REAL),
            "columns": {"image_id": "sop_uid", "path": "png", "patient_id": "mrn",
                        "view_position": "view"},
            "label_columns": ["pna", "pleural_fluid"], "keep_columns": ["hospital", "sex"],
        },
        "sample": {"n": None, "stratify_by": []},
        "extract": {"shard_size": 100},
        "analysis": {"shortcuts": {"site": "hospital"}},
    }  # fmt: skip
    (workdir / name).write_text(yaml.safe_dump(cfg))


def _planned(proc) -> tuple[dict[str, int], dict[str, int]]:
    """(jobs per rule, images to embed per model) from a dry run's output."""
    out = proc.stdout + proc.stderr
    jobs = {}
    if "Job stats" in out:
        table = out.split("Job stats:")[1].split("total")[0]
        jobs = {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M)}
    embed = {
        m[0]: int(m[1]) for m in re.findall(r"model (\w+): .*?, (\d+) image\(s\) to embed", out)
    }
    return jobs, embed


def _snapshot(workdir: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(workdir)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file()
    }


def _vectors(workdir: Path, model: str) -> dict[str, bytes]:
    t = pq.read_table(workdir / f"results/embeddings/{model}.parquet")
    emb = t.column("embedding").combine_chunks()
    d = emb.type.list_size
    raw = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, d)
    return {i: raw[j].tobytes() for j, i in enumerate(t.column("image_id").to_pylist())}


def _reports(workdir: Path, since: dict | None = None) -> dict[str, dict]:
    """Shard reports, only those (re)written since the snapshot `since`."""
    found = {}
    for p in sorted((workdir / "results/embeddings").glob("*/shard-*.report.json")):
        key = str(p.relative_to(workdir))
        if since is None or since.get(key, (None, None))[1] != p.stat().st_mtime_ns:
            found[key] = json.loads(p.read_text())
    return found


def _atlas_ids(workdir: Path) -> set[str]:
    return set(
        pq.read_table(workdir / "results/atlas/atlas.parquet").column("image_id").to_pylist()
    )


ATLAS = "results/atlas/atlas.parquet"


def _step(repo, workdir, rows, new: int, fmt: str = "csv", intruder=None, targets=(ATLAS,)):
    """Write the manifest, dry-run (asserting it plans `new` images and changes nothing), run
    to `targets` (the atlas: what the step checks; the last step runs everything, so no
    analysis keeps a withdrawn image)."""
    manifest = workdir / f"manifest.{fmt}"
    if fmt == "csv":
        rows.to_csv(manifest, index=False)
    else:
        rows.to_parquet(manifest)
    _config(workdir, manifest)
    before = _snapshot(workdir)
    jobs, embed = _planned(snakemake(repo, workdir, "-n"))
    assert _snapshot(workdir) == before  # a dry run: every file byte-identical, same mtime
    assert embed == dict.fromkeys(MODELS, new), embed
    if new:
        shards = -(-new // 100)  # new images fill new shards of 100
        assert jobs["embed_shard"] == shards * len(MODELS) and jobs["thumbnails"] == shards, jobs
    else:
        assert not set(EMBED_JOBS) & set(jobs), jobs
    old = {m: _vectors(workdir, m) for m in MODELS} if before else {}
    if intruder:
        _run_with_intruder(repo, workdir, intruder, targets)
    else:
        snakemake(repo, workdir, targets=targets)
    written = _reports(workdir, before)
    for model in MODELS:
        done = [r for k, r in written.items() if f"/{model}/" in k]
        assert sum(r["embedded"] for r in done) == new and all(r["reused"] == 0 for r in done)
        now = _vectors(workdir, model)
        kept = set(old.get(model, {})) & set(now)
        assert all(now[i] == old[model][i] for i in kept)  # bit for bit
        assert len(now) - len(kept) == new
    assert _atlas_ids(workdir) == set(rows["sop_uid"])
    return before


def _held(lock: Path) -> bool:
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _a_job_finished(workdir: Path, since: int) -> bool:
    """Snakemake records each finished job's outputs under .snakemake/metadata; jobs start only
    after `onstart` has committed the plan (ledger written), so one finished means it is."""
    meta = workdir / ".snakemake/metadata"
    return meta.is_dir() and any(p.stat().st_mtime_ns > since for p in meta.iterdir())


def _run_with_intruder(repo, workdir: Path, config: str, targets=()) -> None:
    """Run, and start a second snakemake (another config) while the first one's jobs run."""
    cmd = [*SNAKEMAKE, "-s", str(repo / "Snakefile"), "-d", str(workdir), "--cores", "2"]
    first = subprocess.Popen(
        [*cmd, *targets, "--configfile", str(workdir / "test.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lock = workdir / ".snakemake/cxratlas/run.lock"
    since = time.time_ns()
    for _ in range(1200):  # the lock is taken before the ledger is written: wait for a job
        if first.poll() is None and _held(lock) and _a_job_finished(workdir, since):
            break
        time.sleep(0.1)
    ledger = (workdir / "results/sample/sample.parquet").read_bytes()
    second = subprocess.run([*cmd, "--configfile", str(workdir / config)], capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-4000:]
    assert second.returncode != 0
    assert "another snakemake is running in this directory" in second.stdout + second.stderr
    assert (workdir / "results/sample/sample.parquet").read_bytes() == ledger


def _mentions(workdir: Path, tokens: set[str]) -> list[str]:
    """Files under results/ or logs/ naming any token (Parquet read column by column)."""
    hits = []
    for root in ("results", "logs"):
        for p in (workdir / root).rglob("*"):
            if not p.is_file():
                continue
            if p.suffix == ".parquet":
                t = pq.read_table(p)
                parts = [str(t.schema.metadata or "")]
                for name in t.column_names:
                    if str(t.column(name).type) in ("string", "large_string"):
                        parts += [x for x in t.column(name).to_pylist() if x]
                text = "\n".join(parts)
            else:
                text = p.read_bytes().decode("utf-8", "replace")
            if any(tok in text for tok in tokens):
                hits.append(str(p.relative_to(workdir)))
    return hits


def test_a_growing_reexported_and_pruned_archive(repo, tmp_path):
    rows = _rows()
    _step(repo, tmp_path, rows.iloc[:400], new=400)
    # next month: 40 more rows; meanwhile someone starts a run with the pruned manifest
    rows.iloc[10:440].to_csv(tmp_path / "intruder.csv", index=False)
    _config(tmp_path, tmp_path / "intruder.csv", "intruder.yaml")
    _step(repo, tmp_path, rows.iloc[:440], new=40, intruder="intruder.yaml")
    drift = json.loads((tmp_path / "results/reduce/pixels_32/drift.json").read_text())
    assert (drift["n_shared"], drift["n_new"], drift["n_removed"]) == (400, 40, 0)
    assert 0 < drift["knn_overlap"] <= 1 and 0 <= drift["procrustes_disparity"] < 1
    # the same rows exported again, in another order and as Parquet
    _step(repo, tmp_path, rows.iloc[:440].sample(frac=1, random_state=5), new=0, fmt="parquet")
    # ten rows withdrawn
    withdrawn = rows.iloc[:10]
    before = _step(
        repo, tmp_path, rows.iloc[10:440].sample(frac=1, random_state=6), new=0, targets=()
    )
    tokens = set(withdrawn["sop_uid"]) | {Path(p).name for p in withdrawn["png"]}
    assert _mentions(tmp_path, tokens) == []
    for model in MODELS:  # no shard job ran: their files were filtered in place
        assert pq.read_table(tmp_path / f"results/embeddings/{model}.parquet").num_rows == 430
        reports = _reports(tmp_path)
        assert sum(r["pruned"] for k, r in reports.items() if f"/{model}/" in k) == 10
        assert all(v[1] == before[k][1] for k, v in _snapshot(tmp_path).items()
                   if k.endswith(".report.json"))  # fmt: skip
    drift = json.loads((tmp_path / "results/reduce/pixels_32/drift.json").read_text())
    assert drift["n_removed"] == 10 and drift["n_new"] == 0
    assert "Nothing to be done" in snakemake(repo, tmp_path, "-n").stdout + ""
