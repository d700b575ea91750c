"""What the end-to-end tests share: running Snakemake on a workdir, the demo config, and
reading a plan's job counts. The demo run itself is a session fixture (conftest.py): every
module that reads a finished 300-image demo run reads the same one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# a new model also reruns the cross-model analyses and gets its own cluster report
ANALYSIS = {"compare": 1, "disagreement": 1, "probes": 1, "shortcuts": 1, "cluster_report": 1,
            "cluster_stability": 1, "label_noise": 1, "quality": 1, "map_drift": 1,
            "maps": 1, "summary": 1}  # fmt: skip
DEFAULT_MODELS = tuple(yaml.safe_load((Path(__file__).parent.parent / "config/config.yaml")
                                      .read_text())["models"])  # fmt: skip


def slice_jobs(*models: str) -> dict[str, int]:
    """The error-slice jobs a run plans when every model's probe changes (a model added or
    re-embedded): without a `classifiers` section each model's probe is a classifier, and each
    classifier's job slices it in every model's space. `models`: the run's models."""
    n = len(set(models))
    return {"classifier": n, "slices": n, "slices_across": 1}


def snakemake(
    repo: Path,
    workdir: Path,
    *args: str,
    check: bool = True,
    env: dict | None = None,
    targets: tuple = (),
):
    """Run the workflow in `workdir` on its test.yaml; `env`: variables added to this process's
    environment for the run (every job sees them); `targets`: files to make instead of `all`
    (given before `--configfile`, which would take them as config files)."""
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(repo / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",
        *targets,
        "--configfile",
        str(workdir / "test.yaml"),
        *args,
    ]
    env = {**os.environ, **env} if env else None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
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


def job_stats(out: str) -> dict[str, int]:
    lines = out.split("Job stats:")[1].splitlines()[3:]
    stats = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


def write_minimal_archive(folder: Path, n_images: int = 40) -> Path:
    """`n_images` phantom radiographs and a manifest of only `image_id` and `path` (no view,
    patient, vendor, label or any other column); returns the manifest's path."""
    from cxratlas.demo.phantom import generate_demo

    demo = generate_demo(folder / "images-root", n_images=n_images, seed=5, progress=False)
    manifest = folder / "minimal.csv"
    demo[["image_id", "path"]].to_csv(manifest, index=False)
    return manifest


def minimal_config(manifest: Path, **sections) -> dict:
    """A user config that names only the minimal archive, plus `sections`."""
    dataset = {"preset": "generic", "manifest": str(manifest),
               "image_root": str(manifest.parent / "images-root")}  # fmt: skip
    return {"dataset": dataset, **sections}
