"""A million vectors through merge -> reduce -> atlas on one machine, and the viewer on the atlas.

    python benchmarks/scale.py [--sizes 100000 1000000] [--dim 768] [--workdir DIR]
                               [--viewer-max 1000000] [--generator subspace|isotropic]

For each size N it writes what the embedding jobs would have written: float16 embedding shards
of 50k rows (`SubspaceClusters` of benchmarks/reduce.py: 40 clusters with a low intrinsic
dimension, as real image embeddings have; `--generator isotropic`: its `IsotropicClusters`, the
one built to be hard for PCA and the cells), a manifest with metadata and two findings, a
sample, and thumbnail shards (a pool of 4,096 distinct 96-px thumbnails cropped from the real
CXRs in ../shared/cxr-real, or from phantoms where those are absent, encoded as the workflow
does: PNG up to 100k images, JPEG beyond; a row's thumbnail is drawn from the pool, so within
a 1 MB Parquet page about 3 % of thumbnails repeat one already there). Then each step runs in
a process of its own, through the code its workflow job runs, with the workflow's default
settings: merge (`merge_shards`), reduce (`read_canonical`, `reduce_embeddings`, the reduced
table) and atlas (`build_atlas`). For each step: the time, and the peak resident memory above
the process's start as a multiple of the float32 matrix (N x dim x 4 bytes). Then the growth
exponent of each step's time between the smallest and the largest N, the atlas file's size per
row, and the time `cxr-atlas view` takes until headless Chromium shows "N / N points" (the
test-only f32 frontend of tests/browser, as the browser test uses; skipped without Chromium
and Playwright, and above --viewer-max rows). At the largest N the reduce step runs twice more:
the baseline, today's default path before landmarks (`umap.landmarks: null`, UMAP lays out every
vector), and the default once again, to check a seeded run gives the same map bit for bit.
The last line is `RESULT n=<largest> total_s=<merge+reduce+atlas> speedup=<the same with the
baseline's reduce / total_s> trust_delta=<trustworthiness - the baseline's, same sample>
recall=<kNN recall> same_map=<True|False> growth=<exponent of the total> peak_x_matrix=<largest
step peak / matrix> atlas_bytes_per_row=<...> viewer_s=<server start + page until every point
is shown>`; a target missed (360 s, N^1.1, 2 x the matrix, trust within 0.01) is a WARNING.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARD = 50_000
POOL = 4096
MODEL = "synthetic"
TARGETS = {"peak_x_matrix": 2.0, "growth": 1.1, "total_s": 360.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cxratlas-scale"))
    parser.add_argument("--viewer-max", type=int, default=1_000_000)
    parser.add_argument("--generator", choices=["subspace", "isotropic"], default="subspace",
                        help="reduce.py's generators; isotropic is hard for PCA")  # fmt: skip
    parser.add_argument("--step", help=argparse.SUPPRESS)  # one step, in its own process
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(STEPS[args.step](args.workdir / str(args.n))))
        return 0
    rows = {n: run_size(n, args) for n in args.sizes}
    largest = args.sizes[-1]
    for step in ("reduce_baseline", "reduce_again"):  # the baseline, and reproducibility
        rows[largest][step] = run_step(step, largest, args)
    report(rows, args.sizes, args.dim)
    return 0


def run_size(n: int, args) -> dict:
    work = args.workdir / str(n)
    t0 = time.perf_counter()
    prepare(work, n, args.dim, args.generator)
    print(f"\n== n={n}: inputs written in {time.perf_counter() - t0:.0f} s ({work})", flush=True)
    out = {step: run_step(step, n, args) for step in ("merge", "reduce", "atlas")}
    atlas = work / "atlas" / "atlas.parquet"
    out["atlas_bytes"] = atlas.stat().st_size
    out["viewer"] = viewer(atlas, n) if n <= args.viewer_max else {"skipped": "above --viewer-max"}
    print(f"  atlas file {out['atlas_bytes'] / 2**20:.0f} MiB "
          f"({out['atlas_bytes'] / n:.0f} bytes/row); viewer: {out['viewer']}",
          flush=True)  # fmt: skip
    return out


def run_step(step: str, n: int, args) -> dict:
    """One step in a process of its own (its peak memory is its own)."""
    cmd = [sys.executable, __file__, "--step", step, "--n", str(n),
           "--workdir", str(args.workdir)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"step {step} at n={n} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {step:<15} {out['s']:>8.1f} s  peak {out['peak_mib']:>8.0f} MiB  "
          f"{out['peak_mib'] / matrix_mib(n, args.dim):.2f} x matrix  "
          f"{out.get('note', '')}", flush=True)  # fmt: skip
    return out


def matrix_mib(n: int, dim: int) -> float:
    return n * dim * 4 / 2**20


# ---- inputs: what the embedding and thumbnail jobs would have written ----


def prepare(work: Path, n: int, dim: int, generator: str = "subspace") -> None:
    """Shards, manifest, sample and thumbnail shards for n images (reused when present)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from reduce import MODELS

    from cxratlas.atlas.thumbnails import thumbnail_encoding
    from cxratlas.io import ManifestColumns, embedding_table, write_manifest, write_parquet

    marker = f"n={n} dim={dim} generator={generator}"  # other inputs are rewritten
    if (work / "ready").exists() and (work / "ready").read_text() == marker:
        return
    (work / "shards").mkdir(parents=True, exist_ok=True)
    (work / "thumbnails").mkdir(exist_ok=True)
    rng = np.random.default_rng(n)
    model = MODELS[generator](dim, rng)
    pool = thumbnail_pool(thumbnail_encoding("auto", n), rng)
    ids = np.array([f"img{i:08d}" for i in range(n)])
    for s, start in enumerate(range(0, n, SHARD)):
        part = ids[start : start + SHARD]
        X = model.draw(rng.integers(0, model.clusters, len(part)), rng)
        table = embedding_table(list(part), X, {"model": MODEL, "shard": s}, "float16")
        write_parquet(table, work / "shards" / f"shard-{s}.parquet")
        thumbs = pool.take(pa.array(rng.integers(0, len(pool), len(part))))
        pq.write_table(pa.table({"image_id": list(part), "thumbnail": thumbs}),
                       work / "thumbnails" / f"shard-{s}.parquet", compression="zstd")  # fmt: skip
    manifest = pd.DataFrame({
        "image_id": ids, "path": [f"files/{i}.jpg" for i in ids],
        "patient_id": [f"{h:016x}" for h in rng.integers(0, 2**62, n) // 3],
        "view_position": rng.choice(["PA", "AP", "LATERAL"], n, p=[0.5, 0.3, 0.2]),
        "sex": rng.choice(["F", "M"], n), "age": rng.integers(18, 95, n),
        "manufacturer": rng.choice(["GE", "Siemens", "Philips", "Carestream", "Agfa"], n),
        "site": rng.choice([f"site{i}" for i in range(8)], n),
        "Pneumonia": pd.array(rng.choice([1, 0, -1], n, p=[0.1, 0.85, 0.05]), "Int8"),
        "Effusion": pd.array(rng.choice([1, 0], n, p=[0.15, 0.85]), "Int8"),
    })  # fmt: skip
    write_manifest(ManifestColumns(("Pneumonia", "Effusion"), ("site",)).tag(manifest),
                   work / "manifest.parquet")  # fmt: skip
    sample = manifest[["image_id", "path"]].assign(shard=np.arange(n) // SHARD)
    write_parquet(pa.Table.from_pandas(sample, preserve_index=False), work / "sample.parquet")
    (work / "ready").write_text(marker)


def thumbnail_pool(encoding: str, rng: np.random.Generator):
    """POOL distinct thumbnails: random crops of real CXRs (phantoms where none are here)."""
    import pyarrow as pa
    from PIL import Image

    from cxratlas.ingest.imaging import thumbnail_png

    real = sorted((ROOT.parent / "shared" / "cxr-real" / "images").glob("*.png"))[:200]
    if real:
        images = [Image.open(p).convert("L") for p in real]
    else:
        from cxratlas.demo.phantom import VENDORS, VIEWS, draw_phantom

        images = [Image.fromarray(draw_phantom(VIEWS[i % 3], VENDORS[i % len(VENDORS)],
                                               i % 4 == 0, i % 5 == 0, i % 3 == 0, rng))
                  for i in range(50)]  # fmt: skip
    out = []
    for i in range(POOL):
        img = images[i % len(images)]
        w, h = img.size
        f = rng.uniform(0.8, 1.0)
        x, y = rng.integers(0, int(w * (1 - f)) + 1), rng.integers(0, int(h * (1 - f)) + 1)
        out.append(thumbnail_png(img.crop((x, y, x + int(w * f), y + int(h * f))), 96, encoding))
    return pa.array(out, pa.binary())


# ---- the steps, each in its own process ----


def _measured(fn) -> dict:
    from cxratlas.memory import peak_rss_mib, reset_peak, rss_mib

    reset_peak()
    base, t0 = rss_mib(), time.perf_counter()
    note = fn()
    return {"s": time.perf_counter() - t0, "peak_mib": peak_rss_mib() - base, "note": note}


def step_merge(work: Path) -> dict:
    from cxratlas.io import merge_shards

    shards = sorted((work / "shards").glob("shard-*.parquet"), key=lambda p: int(p.stem[6:]))
    merged = work / "embeddings.parquet"
    return _measured(lambda: f"{merge_shards([str(p) for p in shards], str(merged))} rows")


def step_reduce(work: Path, baseline: bool = False, out: str = "reduced.parquet") -> dict:
    """The reduce job with the default settings; `baseline`: today's default path before
    landmarks (`umap.landmarks: null`: UMAP lays out every vector)."""
    import faiss  # noqa: F401  (the libraries first, as the reduce job does: the peak is data)
    import sklearn.cluster  # noqa: F401
    import umap  # noqa: F401
    import yaml

    from cxratlas.io import reduced_table, write_parquet
    from cxratlas.reduce import ReduceSettings, reduce_embeddings
    from cxratlas.reduce.order import read_canonical

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    settings = ReduceSettings.from_config(config["reduce"]).but(backend="cpu")
    if baseline:
        settings = settings.but(landmarks=None)
    quality = {}

    def run() -> str:
        ids, X, _ = read_canonical(work / "embeddings.parquet", settings.rng_seed)
        r = reduce_embeddings(X, settings, inplace=True, ids=ids)
        del X
        write_parquet(reduced_table(ids, r, MODEL), work / out)
        quality.update(recall=r.quality["knn"]["recall"], trust=r.quality["trustworthiness"],
                       timings={k: round(v, 1) for k, v in r.timings.items()})  # fmt: skip
        if "landmarks" in r.quality:
            quality["landmarks_recall"] = r.quality["landmarks"]["knn"]["recall"]
        return (f"recall {quality['recall']:.3f} trust {quality['trust']:.4f} "
                f"landmarks' recall {quality.get('landmarks_recall', '-')} "
                f"{r.quality['knn']['tuning']['chosen']}; {quality['timings']}")  # fmt: skip

    return _measured(run) | quality


def step_atlas(work: Path) -> dict:
    from cxratlas.atlas.table import build_atlas

    (work / "atlas").mkdir(exist_ok=True)
    thumbs = sorted((work / "thumbnails").glob("shard-*.parquet"), key=lambda p: int(p.stem[6:]))

    def run() -> str:
        build_atlas(
            str(work / "sample.parquet"), str(work / "manifest.parquet"),
            {MODEL: str(work / "reduced.parquet")}, [str(p) for p in thumbs],
            str(work / "atlas" / "atlas.parquet"), str(work / "atlas" / "state.json"),
            metadata_columns=["patient_id", "view_position", "sex", "age", "manufacturer", "site"],
        )  # fmt: skip
        return "one model, thumbnails, 6 metadata columns, 2 findings"

    return _measured(run)


def step_reduce_baseline(work: Path) -> dict:
    return step_reduce(work, baseline=True, out="reduced-baseline.parquet")


def step_reduce_again(work: Path) -> dict:
    """The default reduce once more: the same map, bit for bit (seeded)?"""
    import pyarrow.parquet as pq

    out = step_reduce(work, out="reduced-again.parquet")
    cols = ["x", "y", "cluster"]
    first = pq.read_table(work / "reduced.parquet", columns=cols)
    again = pq.read_table(work / "reduced-again.parquet", columns=cols)
    (work / "reduced-again.parquet").unlink()
    return out | {"same_map": bool(first.equals(again))}


STEPS = {"merge": step_merge, "reduce": step_reduce, "atlas": step_atlas,
         "reduce_baseline": step_reduce_baseline, "reduce_again": step_reduce_again}  # fmt: skip


# ---- the viewer: time until the browser shows every point ----


def viewer(atlas: Path, n: int) -> dict:
    """Seconds from `cxr-atlas view` to the server answering, and to "n / n points" on the
    page in headless Chromium; the server's resident memory then."""
    import importlib.util
    import re
    import signal

    if not (os.path.exists("/usr/bin/chromium") and importlib.util.find_spec("playwright")):
        return {"skipped": "needs /usr/bin/chromium and playwright"}
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from make_f32_static import make_f32_static

    static = make_f32_static(atlas.parent / "f32-static")
    port = 5083
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "cxratlas.cli", "view", str(atlas), "--port", str(port),
           "--static", str(static)]  # fmt: skip
    t0 = time.perf_counter()
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    try:
        ready = _wait_for_server(url, server, 3600) - t0
        shown = _points_shown(url, f"{n:,} / {n:,} points")
        return {"server_ready_s": round(ready, 1), "points_shown_s": round(shown, 1),
                "server_rss_mib": round(_rss_mib(server.pid))}  # fmt: skip
    except Exception as exc:  # a viewer that cannot load this size is a finding, not a crash
        return {"failed": re.sub(r"\s+", " ", str(exc))[:300]}
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _wait_for_server(url: str, proc, timeout: float) -> float:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the viewer exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return time.perf_counter()
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def _points_shown(url: str, text: str) -> float:
    """Seconds from opening the page to `text` in it (the test's browser flags)."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from test_viewer import CHROMIUM, FLAGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        t0 = time.perf_counter()
        page.goto(url, timeout=600_000)
        page.wait_for_function(f"() => document.body.innerText.includes({json.dumps(text)})",
                               timeout=1_800_000)  # fmt: skip
        shown = time.perf_counter() - t0
        browser.close()
    return shown


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS"))


# ---- the report ----


def report(rows: dict, sizes: list[int], dim: int) -> None:
    lo, hi = sizes[0], sizes[-1]
    steps = ("merge", "reduce", "atlas")
    total = {n: sum(rows[n][s]["s"] for s in steps) for n in sizes}
    print("\nstep     " + "".join(f"{f'n={n}':>22}" for n in sizes) + "   growth")
    for s in steps:
        cells = "".join(
            f"{rows[n][s]['s']:>9.1f} s {rows[n][s]['peak_mib'] / matrix_mib(n, dim):>7.2f} x"
            for n in sizes
        )
        growth = _growth(rows[lo][s]["s"], rows[hi][s]["s"], lo, hi)
        print(f"{s:<9}{cells}   N^{growth:.2f}")
    growth = _growth(total[lo], total[hi], lo, hi)
    peak = max(rows[hi][s]["peak_mib"] for s in steps) / matrix_mib(hi, dim)
    per_row = rows[hi]["atlas_bytes"] / hi
    view = rows[hi]["viewer"]
    shown = _viewer_s(view)
    for name, value, limit in (("peak_x_matrix", peak, TARGETS["peak_x_matrix"]),
                               ("growth", growth, TARGETS["growth"]),
                               ("total_s", total[hi], TARGETS["total_s"])):  # fmt: skip
        if value > limit and lo != hi:
            print(f"WARNING: {name} {value:.2f} is above its target {limit}", file=sys.stderr)
    big = rows[hi]
    base_total = total[hi] - big["reduce"]["s"] + big["reduce_baseline"]["s"]
    trust_delta = big["reduce"]["trust"] - big["reduce_baseline"]["trust"]
    print(f"baseline (today's default path, umap.landmarks null) at n={hi}: merge + reduce + "
          f"atlas {base_total:.0f} s, reduce trust {big['reduce_baseline']['trust']:.4f} recall "
          f"{big['reduce_baseline']['recall']:.3f}")  # fmt: skip
    if trust_delta < -0.01:
        print(f"WARNING: trustworthiness {trust_delta:+.4f} against the baseline's map (target "
              "within 0.01)", file=sys.stderr)  # fmt: skip
    if not big["reduce_again"]["same_map"]:
        print("WARNING: a second seeded run gave another map", file=sys.stderr)
    print(f"RESULT n={hi} total_s={total[hi]:.0f} speedup={base_total / total[hi]:.2f} "
          f"trust_delta={trust_delta:+.4f} recall={big['reduce']['recall']:.3f} "
          f"same_map={big['reduce_again']['same_map']} growth={growth:.2f} "
          f"peak_x_matrix={peak:.2f} atlas_bytes_per_row={per_row:.0f} "
          f"viewer_s={shown}")  # fmt: skip


def _viewer_s(view: dict) -> str:
    """Seconds from `cxr-atlas view` to every point shown, or why there are none."""
    if "points_shown_s" not in view:
        return json.dumps(view).replace(" ", "")
    return f"{view['server_ready_s'] + view['points_shown_s']:.1f}"


def _growth(t_lo: float, t_hi: float, lo: int, hi: int) -> float:
    return float(np.log(t_hi / t_lo) / np.log(hi / lo)) if hi != lo else float("nan")


if __name__ == "__main__":
    sys.exit(main())
