"""Embedding work after an archive grows by 10 %: the growth run against a full run, same process.

    python benchmarks/growth.py [--workdir DIR] [--grow 0.1]

Two archives, each run through the real workflow (`snakemake`, up to the merged embeddings of
the default config's two models), first whole, then grown:

- phantoms: demo radiographs in a generic manifest, `sample.n: null`; the new rows are appended
  (the easy case: every new image fills new shards);
- cxr-real (`../shared/cxr-real`, if present): a fixed `sample.n`, stratified by view, and every
  new row a lateral film, the rarest view (hard for the draw: the new rows all land in one
  stratum, the allocation moves, and images leave the other strata while the lateral one grows).

Baseline: the full run (what every growth cost before the sample was order-free: all shards
embedded again). Prints, per archive, the shard jobs, images embedded and the embed jobs'
seconds (their `benchmark:` TSVs) of both runs, and the ratio growth / full.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
CXR_REAL = REPO.parent / "shared" / "cxr-real"
sys.path.insert(0, str(REPO / "src"))


def run(workdir: Path, cfg: dict) -> dict[str, float]:
    """Run the workflow up to the merged embeddings; return what the embed jobs of this run did."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "bench.yaml").write_text(yaml.safe_dump(cfg))
    before = {p: p.stat().st_mtime_ns for p in workdir.glob("results/embeddings/*/*.report.json")}
    targets = [f"results/embeddings/{m}.parquet" for m in ("pixels_32", "pixels_64_pca")]
    # targets go first: --configfile takes every word after it
    cfg_file = str(workdir / "bench.yaml")
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"),
           "-d", str(workdir), "--cores", "2", "--configfile", cfg_file]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    done = [p for p in workdir.glob("results/embeddings/*/*.report.json")
            if before.get(p) != p.stat().st_mtime_ns]  # fmt: skip
    reports = [json.loads(p.read_text()) for p in done]
    seconds = 0.0
    for r in reports:
        tsv = workdir / f"logs/benchmarks/embed/{r['model']}/shard-{r['shard']}.tsv"
        seconds += float(pd.read_csv(tsv, sep="\t")["s"].iloc[-1])
    return {"jobs": len(reports), "embedded": sum(r["embedded"] for r in reports),
            "reused": sum(r["reused"] for r in reports), "seconds": seconds}  # fmt: skip


def phantom_archive(root: Path, grow: float):
    from cxratlas.demo.phantom import generate_demo

    rows = generate_demo(root / "phantoms", n_images=440, seed=3, image_size=128, progress=False)
    n = math.floor(len(rows) / (1 + grow))
    cfg = {"dataset": {"preset": "generic", "manifest": str(root / "phantoms/manifest.csv"),
                       "image_root": str(root / "phantoms")},
           "sample": {"n": None}, "extract": {"shard_size": 50}}  # fmt: skip
    return rows, rows.iloc[:n], cfg, root / "phantoms/manifest.csv"


def real_archive(root: Path, grow: float):
    rows = pd.read_csv(CXR_REAL / "metadata.csv", dtype=str, keep_default_na=False)
    rows = rows.loc[rows["view_position"].isin(["PA", "AP", "LATERAL"])]
    lateral = rows["view_position"] == "LATERAL"
    base = rows.loc[~lateral].iloc[:400]
    extra = rows.loc[lateral].iloc[: int(len(base) * grow)]
    cfg = {"dataset": {"preset": "generic", "manifest": str(root / "real.csv"),
                       "image_root": str(CXR_REAL), "columns": {"path": "file"}},
           "sample": {"n": 300, "stratify_by": ["view_position"]},
           "extract": {"shard_size": 50}}  # fmt: skip
    return pd.concat([base, extra]), base, cfg, root / "real.csv"


def bench(name: str, archive, workdir: Path, grow: float) -> None:
    grown, first, cfg, manifest = archive(workdir, grow)
    first.to_csv(manifest, index=False)
    work = workdir / name.split()[0]
    full = run(work, cfg)
    grown.to_csv(manifest, index=False)
    growth = run(work, cfg)
    print(f"\n{name}: {len(first)} -> {len(grown)} rows (counts summed over both models)")
    for label, r in (("full run (baseline)", full), (f"after {grow:.0%} growth", growth)):
        print(f"  {label:22s} {r['jobs']:3d} shard jobs  {r['embedded']:4d} embedded  "
              f"{r['reused']:3d} reused  {r['seconds']:7.1f} s")  # fmt: skip
    print(f"  ratio growth / full: images {growth['embedded'] / full['embedded']:.3f}, "
          f"embed seconds {growth['seconds'] / full['seconds']:.3f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--grow", type=float, default=0.1)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="growth-"))
    bench("phantoms", phantom_archive, workdir, args.grow)
    if (CXR_REAL / "metadata.csv").exists():
        bench("cxr-real (new rows all lateral)", real_archive, workdir, args.grow)
    else:
        print("cxr-real: skipped (no ../shared/cxr-real)")


if __name__ == "__main__":
    main()
