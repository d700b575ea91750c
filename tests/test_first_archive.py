"""A researcher's first run on their own archive, as it goes: a generic manifest with their own
column names, label names no vocabulary has (covid, tb, nodule_small) and a site column; then
the usual mistakes, made and fixed one after another. Each mistake stops the run before any job,
naming what is wrong, with every file under results/ unchanged; no fix reruns an embedding job;
the final atlas and analyses hold every label and column.

Run on 240 real radiographs of ../shared/cxr-real where present (as in CI), else on phantoms
behind the same kind of manifest: the checks are the same, and one run of them is minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CXR_REAL = REPO.parent / "shared" / "cxr-real"
pytestmark = pytest.mark.workflow
LABELS = ["covid", "tb", "nodule_small"]
EMBED_JOBS = ("embed_shard", "decode_shard", "fit_model", "merge_embeddings", "reduce")


def _phantom_archive(folder: Path) -> pd.DataFrame:
    from cxratlas.demo.phantom import generate_demo

    demo = generate_demo(folder, n_images=120, seed=4, outlier_fraction=0.05, progress=False)
    return pd.DataFrame(
        {
            "SOPInstanceUID": demo["image_id"],
            "file_path": demo["path"],
            "PatientID": demo["patient_id"],
            "ViewPosition": demo["view_position"],
            "Sex": demo["sex"],
            "site": demo["manufacturer"],
            "covid": demo["Cardiomegaly"],  # planted in the pixels: the probes must find it
            "tb": demo["Pleural Effusion"],
            "nodule_small": demo["Support Devices"],
        }
    )


def _real_archive(folder: Path) -> pd.DataFrame:
    meta = pd.read_csv(CXR_REAL / "metadata.csv", dtype=str, keep_default_na=False)
    meta = meta.sample(frac=1, random_state=0).groupby("source_repo").head(80).head(240)
    return pd.DataFrame(
        {
            "SOPInstanceUID": meta["image_id"],
            "file_path": meta["file"],
            "PatientID": meta["patient_id"],
            "ViewPosition": meta["view_position"],
            "Sex": meta["sex"],
            "site": meta["source_repo"].str.split("/").str[0],
            "covid": meta["covid19"],
            "tb": meta["tuberculosis"],
            "nodule_small": meta["nodule"],
        }
    )


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class Archive:
    """A work folder with a manifest and a config the test edits, as the user would."""

    def __init__(self, workdir: Path, image_root: Path, manifest: pd.DataFrame):
        self.dir, self.image_root = workdir, image_root
        self.good = manifest.reset_index(drop=True)
        self.good.to_csv(workdir / "manifest.csv", index=False)
        self.config = {
            "dataset": {
                "preset": "generic",
                "manifest": "manifest.csv",
                "image_root": str(image_root),
                "columns": {
                    "image_id": "SOPInstanceUID",
                    "path": "file_path",
                    "patient_id": "PatientID",
                    "view_position": "ViewPosition",
                    "sex": "Sex",
                },  # fmt: skip
                "label_columns": ["covid", "tb"],
                "keep_columns": [],
            },
            "sample": {"n": 100000},  # more than there are: takes all, says so
            "extract": {"shard_size": 50},
        }
        self.write()

    def write(self) -> None:
        (self.dir / "user.yaml").write_text(yaml.safe_dump(self.config))

    def snakemake(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "-d", str(self.dir), "--cores", "2",
               "--configfile", str(self.dir / "user.yaml"), *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900)

    def run(self) -> str:
        proc = self.snakemake()
        assert proc.returncode == 0, proc.stderr[-6000:]
        return proc.stderr

    def planned_jobs(self) -> dict[str, int]:
        """Jobs a dry run plans, by rule."""
        proc = self.snakemake("-n", "--quiet", "rules")
        assert proc.returncode == 0, proc.stderr[-6000:]
        jobs = {}
        for line in (proc.stdout + proc.stderr).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
                jobs[parts[0]] = int(parts[1])
        return jobs

    def embeddings(self) -> dict[str, tuple[str, int]]:
        return {
            str(p.relative_to(self.dir)): (
                hashlib.sha256(p.read_bytes()).hexdigest(),
                p.stat().st_mtime_ns,
            )  # fmt: skip
            for p in sorted((self.dir / "results/embeddings").rglob("*.parquet"))
        }


SOURCE = "cxr-real" if (CXR_REAL / "metadata.csv").exists() else "phantoms"


@pytest.fixture(scope="module", params=[SOURCE])
def archive(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"archive-{request.param}")
    if request.param == "phantoms":
        images = workdir / "images-root"
        manifest = _phantom_archive(images)
    else:
        images, manifest = CXR_REAL, _real_archive(workdir)
    return Archive(workdir, images, manifest)


def _mistakes(a: Archive):
    """(what, how to make it, how to undo it, text the error must hold)."""
    good_csv = (a.dir / "manifest.csv").read_bytes()

    def csv(frame: pd.DataFrame):
        return lambda: frame.to_csv(a.dir / "manifest.csv", index=False)

    def restore():
        (a.dir / "manifest.csv").write_bytes(good_csv)

    def config(path: str, value):
        def edit():
            a.config["dataset"][path] = value
            a.write()

        return edit

    columns = dict(a.config["dataset"]["columns"])
    typo = {**columns, "path": "file_pth"}
    no_id = {k: v for k, v in columns.items() if k != "image_id"}
    bad_label = a.good.copy()
    bad_label.loc[7, "covid"] = "maybe"
    dup = a.good.copy()
    dup.loc[3, "SOPInstanceUID"] = dup.loc[2, "SOPInstanceUID"]
    a_dir = a.good.copy()
    a_dir.loc[4, "file_path"] = "."
    (a.dir / "manifest.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    (a.dir / "empty.csv").write_bytes(b"")
    a.good.head(0).to_csv(a.dir / "header-only.csv", index=False)
    return [
        ("column-map typo", config("columns", typo), config("columns", columns),
         "column 'file_pth' (mapped to 'path' in dataset.columns) not found"),
        ("required column unmapped", config("columns", no_id), config("columns", columns),
         "required column(s) ['image_id'] missing"),
        ("bad label value", csv(bad_label), restore,
         "row 9, column 'covid': label value 'maybe'"),
        ("duplicate ids", csv(dup), restore, f"duplicate id {a.good.loc[2, 'SOPInstanceUID']!r}"),
        ("a spreadsheet", config("manifest", "manifest.xlsx"), config("manifest", "manifest.csv"),
         "manifest.xlsx: spreadsheet files are not read"),
        ("a 0-byte file", config("manifest", "empty.csv"), config("manifest", "manifest.csv"),
         "empty.csv: the file is empty (0 bytes)"),
        ("a header-only file", config("manifest", "header-only.csv"),
         config("manifest", "manifest.csv"), "header-only.csv: has a header"),
        ("a directory as an image path", csv(a_dir), restore,
         f"row 6, column 'path': '{a.image_root}' is a directory"),
    ]  # fmt: skip


def test_first_run_mistakes_and_fixes(archive):
    a = archive
    log = a.run()
    n = len(a.good)
    assert f"sample.n is 100000 but the datasets hold {n} usable images" in log
    shards = -(-n // 50)
    assert len(list((a.dir / "results/embeddings/pixels_32").glob("shard-*.report.json"))) == shards
    first = a.embeddings()
    results = a.dir / "results"

    for what, make, undo, message in _mistakes(a):
        before = _tree_digest(results)
        make()
        proc = a.snakemake()
        assert proc.returncode != 0, what
        assert message in proc.stderr, (what, proc.stderr[-3000:])
        assert "stopped before any job" in proc.stderr, what
        assert "Building DAG of jobs" not in proc.stderr, what  # no job was even planned
        assert _tree_digest(results) == before, f"{what}: results/ changed"
        undo()
    # every mistake undone, results/ unchanged: one dry run shows that none of them left a
    # plan behind (under .snakemake) that reruns an embedding job
    jobs = a.planned_jobs()
    assert not set(jobs) & set(EMBED_JOBS), jobs

    # changes that touch only metadata: a label column, a kept column, a corrected label
    a.config["dataset"]["label_columns"] = LABELS
    a.config["dataset"]["keep_columns"] = ["site"]
    a.write()
    fixed = a.good.copy()
    fixed.loc[0, "tb"] = "1" if str(fixed.loc[0, "tb"]) != "1" else "0"
    fixed.to_csv(a.dir / "manifest.csv", index=False)
    jobs = a.planned_jobs()
    assert not set(jobs) & set(EMBED_JOBS), jobs
    assert {"ingest", "atlas", "probes", "eda"} <= set(jobs)
    a.run()
    assert a.embeddings() == first  # byte-identical and never rewritten

    atlas = pq.read_table(results / "atlas/atlas.parquet").to_pandas()
    assert len(atlas) == n and {*LABELS, "site", "findings"} <= set(atlas.columns)
    truth = a.good.set_index("SOPInstanceUID")["covid"].reindex(atlas["image_id"])
    positive = pd.to_numeric(truth, errors="coerce").to_numpy() == 1
    assert ((atlas["covid"] == "positive").to_numpy() == positive).all()
    assert atlas.loc[atlas["image_id"] == fixed.loc[0, "SOPInstanceUID"], "tb"].iloc[0] == (
        "positive" if fixed.loc[0, "tb"] == "1" else "negative"
    )
    state = json.loads((results / "atlas/state.json").read_text())
    assert "site" in [c.get("title") for c in state["charts"].values()]
    eda = pd.read_parquet(results / "analysis/eda/counts.parquet")
    assert {f"label:{x}" for x in LABELS} | {"site"} <= set(eda["section"])
    probes = pd.read_parquet(results / "analysis/probes/probes.parquet")
    assert "covid" in set(probes["finding"])
    for model in ("pixels_32", "pixels_64_pca"):
        enr = pd.read_parquet(results / f"analysis/clusters/{model}/enrichment.parquet")
        assert set(LABELS) & set(enr.loc[enr["kind"] == "finding", "finding"])
        sites = set(enr.loc[enr["kind"] == "attribute", "finding"])
        assert any(s.startswith("site=") for s in sites), sites
        groups = pd.read_parquet(results / f"analysis/clusters/{model}/groups.parquet")
        assert "top_site" in groups.columns
    noise = pd.read_parquet(results / "analysis/label_noise/label_noise.parquet")
    assert len(noise) and set(noise["finding"]) <= set(LABELS)  # auto: one of the user's labels
    report = a.dir / "report.html"
    proc = a.snakemake("--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report.stat().st_size > 10_000


def test_jobs_import_this_checkout_not_another_editable_install(tmp_path):
    """A decoy `cxratlas` registered the way `pip install -e` registers another clone (an
    import hook answering before sys.path) never reaches a rule's script."""
    decoy = tmp_path / "other-clone/src/cxratlas"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the other clone was imported')\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import importlib.abc, importlib.util, sys\n"
        "class Editable(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cxratlas' or name.startswith('cxratlas.'):\n"
        f"            base = {str(decoy)!r}\n"
        "            rel = name.split('.')[1:]\n"
        "            f = base + '/' + ('/'.join(rel) + '.py' if rel else '__init__.py')\n"
        "            return importlib.util.spec_from_file_location(name, f)\n"
        "sys.meta_path.insert(0, Editable())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    check = "import _bootstrap, cxratlas.ingest.manifest, cxratlas; print(cxratlas.__file__)"
    without = subprocess.run([sys.executable, "-c", "import cxratlas"], env=env,
                             capture_output=True, text=True)  # fmt: skip
    assert "the other clone was imported" in without.stderr  # the decoy does answer first
    proc = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                          text=True, cwd=REPO / "scripts")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(REPO / "src/cxratlas/__init__.py")
