"""Error slices on planted truth (dcbench's recipe), against the Domino-style mixture alone in
one space, run in the same process; and the step's time at scale against the reduce step.

    python benchmarks/slices.py [--demo-run DIR] [--real-run DIR] [--n 100000] [--dim 768]
                                [--findings 14] [--skip-runs] [--skip-scale]

Planted truth: a classifier right except on a hidden stratum that no column of the study names
(both ways wrong there: its positives scored as negatives, its negatives as positives), and
one whose errors fall at random (15 % of the positives scored as negatives). Data:

- `phantoms`: a finished demo run (`--demo-run`; without it one is made, 1,200 phantoms, in a
  temporary folder), finding cardiomegaly: strata the planted outlier films (inverted,
  rotated, cropped: `gt_outlier` of the demo's own manifest, which the study never reads),
  and the films with support devices (`gt_support_devices`: the study reads only its label);
- `cxr-real`: a run on ../shared/cxr-real (`--real-run`; without it one is made), finding
  covid-19: strata the lateral films, the NIH collection, and the 30 films with coloured
  annotations (`has_color_marks`), each unknown to the classifier's search;
- `subspace` and `isotropic` (the reduce benchmark's generators, `--n` x `--dim`): stratum
  one of the clusters (subspace), or, hard for the method, 3 % of the images displaced a
  little along one random direction of 768 (isotropic: the stratum hardly shows in 128
  principal components of 50 well-separated clusters).

Per model space, ours (the workflow's: mixture found on one half of the patients, tested on
the other, BH over the classifier; map clusters scored too) against the baseline, Domino's
mixture with its own round-robin start and its 5 most error-prone of 25 components, two ways:
in-sample (`base_*`: fitted on every image, each placed by embedding, label and prediction)
and as Domino's `discover()` uses it (`base_held_*`: fitted on one half of the patients, the
other half placed by embedding alone; both ways). Precision@10: of the reported slice best at
it, the share of its 10 most typical images in the stratum; recall and precision: of all the
reported slices together (a stratum wrong both ways is two slices, one per class). For the
random classifier, the slices flagged at BH 0.05: ours, and the baseline's in-sample components
tested on the images that chose them (what a test that ignores the search gives).

Scale: one model, `--findings` findings, `--n` x `--dim`: the reduce step
(`reduce_embeddings`, seeded, CPU) and the slicing step (PCA + every finding) on the same
matrix in the same process; the RESULT line gives slicing / reduce.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cxratlas.analysis.metrics import bh_adjust  # noqa: E402
from cxratlas.slices.across import combine  # noqa: E402
from cxratlas.slices.mixture import (  # noqa: E402
    MixtureSettings,
    calibrated,
    fit_mixture,
    round_robin_init,
    slice_components,
)
from cxratlas.slices.run import (  # noqa: E402
    AcrossSettings,
    Context,
    SliceSettings,
    Space,
    SpaceFiles,
    load_context,
    load_space,
    pca_space,
    slice_classifier,
)
from cxratlas.slices.score import Ranking, grouped_test, stratum_ranks  # noqa: E402

CXR_REAL = REPO.parent / "shared" / "cxr-real"
K = 10  # precision@10


def planted_scores(y: np.ndarray, stratum: np.ndarray, kind: str, rng) -> np.ndarray:
    """`planted`: right except on the stratum, wrong both ways there; `random`: 15 % of the
    positives scored as negatives, wherever they are."""
    score = np.where(y == 1, rng.normal(3, 1, len(y)), rng.normal(0, 1, len(y)))
    if kind == "planted":
        flipped = np.where(y == 1, rng.normal(0, 1, len(y)), rng.normal(3, 1, len(y)))
        return np.where(stratum, flipped, score)
    return np.where((y == 1) & (rng.random(len(y)) < 0.15), rng.normal(0, 1, len(y)), score)


def ours(ctx: Context, space: Space, pred: pd.DataFrame, s: SliceSettings):
    r = slice_classifier(ctx, space, pred, s)
    return combine([r.table], [r.members], [r.findings], AcrossSettings())


def hits(slices: list[tuple[list, set]], target: set) -> tuple[float, float, float]:
    """(precision@10, recall, precision) of a method's reported slices (each: its images most
    typical first, its members): precision@10 of the slice best at it; recall and precision
    of all of them together (a stratum wrong both ways is two slices, one per class)."""
    if not slices:
        return 0.0, 0.0, 0.0
    p10 = max(np.mean([i in target for i in top[:K]]) for top, _ in slices)
    union = set().union(*(members for _, members in slices))
    return p10, len(union & target) / len(target), len(union & target) / max(1, len(union))


def ours_hit(table, members, target: set) -> tuple[float, float, float, int]:
    """`hits` of the flagged slices, and how many there are."""
    flagged = table[table["flagged"]]
    slices = []
    for r in flagged.itertuples():
        own = members[(members["model"] == r.model) & (members["slice"] == r.slice)]
        top = own.sort_values("typicality", ascending=False)["image_id"].tolist()
        slices.append((top, set(top)))
    return (*hits(slices, target), len(flagged))


def baseline(X, y, score, ids, target: set, seed: int = 0):
    """Domino's mixture alone, in-sample: `hits` of its 5 slices, and their in-sample p."""
    s = MixtureSettings()
    yhat = calibrated(y, score)
    model = fit_mixture(X, y, yhat, s, seed, init=round_robin_init)
    resp = model.responsibilities(X, y, yhat, s)
    comps = slice_components(model, len(X), 5, 1)
    hard = resp.argmax(1)
    slices = [(ids[np.argsort(-resp[:, k])].tolist(), set(ids[hard == k])) for k in comps]
    # the same rank-sum test as ours, on the images that chose each component
    r = Ranking.of(y, score, np.arange(len(y)), 0.5)
    values = stratum_ranks(r.loss, y)
    group = np.full(len(y), -1)
    for i, k in enumerate(comps):
        group[hard == k] = i
    _, p = grouped_test(values, group, y, len(comps))
    return (*hits(slices, target), p)


def baseline_held_out(X, y, score, ids, patients, target: set, seed: int = 0):
    """Domino's mixture as its `discover()` uses it: fitted on one split, the other split's
    images placed by their embedding alone (here both ways, on the same patient halves as
    ours): `hits` of its 5 slices a split."""
    from cxratlas.slices.search import patient_halves

    s = MixtureSettings()
    yhat = calibrated(y, score)
    half = patient_halves(patients, y, seed)
    slices = []
    for h in (1, 2):
        fit, held = half == h, half != h
        model = fit_mixture(X[fit], y[fit], yhat[fit], s, seed, init=round_robin_init)
        resp = model.responsibilities(X[held], None, None, s)
        hard = resp.argmax(1)
        for k in slice_components(model, int(fit.sum()), 5, 1):
            order = np.argsort(-resp[:, k])
            slices.append((ids[held][order].tolist(), set(ids[held][hard == k])))
    return hits(slices, target)


def finding_frame(ids, y, score) -> pd.DataFrame:
    return pd.DataFrame({"classifier": "c", "finding": "f", "image_id": ids,
                         "label": y.astype(np.int8), "score": score})  # fmt: skip


def run_data(name: str, ctx: Context, spaces: dict[str, Space], ids, y, stratum) -> list[dict]:
    """Both classifiers in every model space of one data set, ours and the baseline."""
    rows = []
    target = set(ids[stratum])
    for kind in ("planted", "random"):
        score = planted_scores(y, stratum, kind, np.random.default_rng(1))
        pred = finding_frame(ids, y, score)
        for model, space in spaces.items():
            at = space.index.get_indexer(ids)
            table, members, iso = ours(ctx, space, pred, SliceSettings())
            p10, rec, prec, flagged = ours_hit(table, members, target)
            b10, brec, bprec, bp = baseline(space.X[at], y, score, ids, target)
            patients = ctx.manifest["patient_id"].reindex(ids).astype(str).to_numpy() \
                if "patient_id" in ctx.manifest else ids  # fmt: skip
            h10, hrec, hprec = baseline_held_out(space.X[at], y, score, ids, patients, target)
            rows.append({"data": name, "classifier": kind, "space": model, "n": len(ids),
                         "stratum": len(target), "ours_p10": p10, "ours_recall": rec,
                         "ours_precision": prec, "ours_flagged": flagged, "base_p10": b10,
                         "base_recall": brec, "base_precision": bprec,
                         "base_flagged": int((bh_adjust(bp) < 0.05).sum()),
                         "base_held_p10": h10, "base_held_recall": hrec,
                         "base_held_precision": hprec,
                         "isolation": float(iso["isolation"].iloc[0])})  # fmt: skip
    return rows


def workflow_run(config: dict, workdir: Path) -> Path:
    (workdir / "bench.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
                    str(workdir), "--cores", "2", "--configfile", str(workdir / "bench.yaml")],
                   check=True, capture_output=True)  # fmt: skip
    return workdir


def run_spaces(run: Path, classifier: str) -> tuple[Context, dict[str, Space]]:
    from cxratlas.io import atlas_models

    ctx = load_context(classifier, str(run / "results/manifest.parquet"), {})
    s = SliceSettings()
    spaces = {}
    for m in atlas_models(run / "results/atlas/atlas.parquet"):
        files = SpaceFiles(m, str(run / f"results/embeddings/{m}.parquet"),
                           str(run / f"results/reduce/{m}/reduced.parquet"))  # fmt: skip
        spaces[m] = load_space(files, s)
    return ctx, spaces


def labelled(ctx: Context, finding: str):
    values = ctx.manifest[finding].astype("Int8")
    ok = values.isin([0, 1]).fillna(False).to_numpy()
    return ctx.manifest.index[ok].to_numpy(), values[ok].to_numpy(int)


def phantoms(run: Path | None, tmp: Path) -> list[dict]:
    """The planted outlier films (visible in both pixel maps) and the support devices (partly:
    they travel with the ICU's AP films), cardiomegaly."""
    if run is None:
        run = workflow_run({"dataset": {"demo": {"n_images": 1200, "seed": 3}},
                            "sample": {"n": None}, "extract": {"shard_size": 400}},
                           tmp / "demo")  # fmt: skip
    ctx, spaces = run_spaces(run, "phantoms")
    ids, y = labelled(ctx, "cardiomegaly")
    truth = pd.read_csv(run / "resources/demo/manifest.csv", keep_default_na=False)
    truth = truth.set_index("image_id").loc[ids]
    rows = []
    for name, column in (("outliers", "gt_outlier"), ("devices", "gt_support_devices")):
        stratum = truth[column].to_numpy() == 1
        rows += run_data(f"phantoms:{name}", ctx, spaces, ids, y, stratum)
    return rows


def real(run: Path | None, tmp: Path) -> list[dict]:
    """Lateral films (visible to the pixel maps; the classifier is never told the view), the
    NIH collection (partly), the films with coloured annotations (not: a few coloured pixels
    in grey); covid-19 where labelled."""
    if not (CXR_REAL / "metadata.csv").exists():
        print("no ../shared/cxr-real: the real-data rows are left out")
        return []
    if run is None:
        run = workflow_run({"dataset": {"preset": "generic",
                                        "manifest": str(CXR_REAL / "metadata.csv"),
                                        "image_root": str(CXR_REAL), "columns": {"path": "file"},
                                        "label_columns": ["pneumonia", "covid19", "normal"]},
                            "sample": {"n": None, "stratify_by": []},
                            "extract": {"shard_size": 200}}, tmp / "real")  # fmt: skip
    ctx, spaces = run_spaces(run, "cxr-real")
    finding = next(f for f in ("covid19", "covid", "pneumonia") if f in ctx.findings)
    ids, y = labelled(ctx, finding)
    meta = pd.read_csv(CXR_REAL / "metadata.csv", dtype=str, keep_default_na=False)
    meta = meta.set_index("image_id").reindex(ids)
    strata = {"lateral": meta["view_position"] == "LATERAL",
              "nih": meta["source_dataset"].str.startswith("NIH ChestX-ray14 (labels"),
              "colour_marks": meta["has_color_marks"] == "1"}  # fmt: skip
    rows = []
    for name, stratum in strata.items():
        rows += run_data(f"cxr-real:{name}", ctx, spaces, ids, y, stratum.to_numpy(bool))
    return rows


def synthetic(generator: str, n: int, dim: int, findings: int, seed: int = 0):
    """(X, map-free ids, labels per finding, the planted stratum) of a generator."""
    import reduce as rb

    rng = np.random.default_rng(seed)
    model = rb.MODELS[generator](dim, rng)
    label = rng.integers(0, model.clusters, n)
    X = np.empty((n, dim), np.float32)
    for start in range(0, n, 20000):
        sl = slice(start, min(n, start + 20000))
        X[sl] = model.draw(label[sl], rng)
    if generator == "subspace":
        stratum = label == 7
    else:  # 3 % of one cluster's images, moved a little along one random direction
        stratum = (label == 7) & (rng.random(n) < 0.5)
        direction = rng.normal(size=dim).astype(np.float32)
        X[stratum] += 0.8 * direction / np.linalg.norm(direction) * np.sqrt(dim) * 0.1
    ys = (rng.random((findings, n)) < rng.uniform(0.1, 0.3, (findings, 1))).astype(int)
    return X, ys, stratum


def scale(generator: str, n: int, dim: int, findings: int) -> dict:
    """The reduce step and the slicing step (every finding) on one matrix, same process."""
    from cxratlas.reduce import ReduceSettings, reduce_embeddings

    X, ys, stratum = synthetic(generator, n, dim, findings)
    ids = np.array([f"i{i}" for i in range(n)], dtype=object)
    meta = pd.DataFrame({"patient_id": ids}, index=pd.Index(ids, name="image_id"))
    for f in range(findings):
        meta[f"f{f}"] = pd.array(ys[f], dtype="Int8")
    t0 = time.perf_counter()
    reduced = reduce_embeddings(X.copy(), ReduceSettings(seed=42, backend="cpu", trust_sample=10))
    t_reduce = time.perf_counter() - t0
    rng = np.random.default_rng(2)
    pred = pd.concat([finding_frame(ids, ys[f], planted_scores(
        ys[f], stratum, "planted" if f == 0 else "random", rng)).assign(finding=f"f{f}")
        for f in range(findings)], ignore_index=True)  # fmt: skip
    ctx = Context("c", meta, [f"f{f}" for f in range(findings)], (), {})
    s = SliceSettings()
    t0 = time.perf_counter()
    space = Space("m", pd.Index(ids), pca_space(X, s.pca, 0), reduced.cluster, {})
    r = slice_classifier(ctx, space, pred, s)
    t_slices = time.perf_counter() - t0
    table, members, _ = combine([r.table], [r.members], [r.findings], AcrossSettings())
    p10, rec, prec, _ = ours_hit(table[table["finding"] == "f0"], members, set(ids[stratum]))
    others = table[(table["finding"] != "f0") & (table["status"] == "scored")]
    return {"generator": generator, "n": n, "dim": dim, "findings": findings,
            "reduce_s": t_reduce, "slices_s": t_slices, "ratio": t_slices / t_reduce,
            "ours_p10": p10, "ours_recall": rec, "ours_precision": prec,
            "random_flagged": int(others["flagged"].sum()),
            "random_below_bh": int((others["p_adj"] < 0.05).sum()),
            "random_tests": len(others)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-run", type=Path)
    parser.add_argument("--real-run", type=Path)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--findings", type=int, default=14)
    parser.add_argument("--generators", nargs="+", default=["subspace", "isotropic"])
    parser.add_argument("--skip-runs", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    if not args.skip_runs:
        with tempfile.TemporaryDirectory() as tmp:
            rows = phantoms(args.demo_run, Path(tmp)) + real(args.real_run, Path(tmp))
        table = pd.DataFrame(rows)
        print("\n== planted truth, per model space: ours vs the Domino-style mixture alone")
        print(table.round(3).to_string(index=False))
        for r in table.itertuples():
            print(
                f"RESULT data={r.data} classifier={r.classifier} space={r.space} "
                f"ours_p10={r.ours_p10:.2f} ours_recall={r.ours_recall:.2f} "
                f"ours_flagged={r.ours_flagged} base_p10={r.base_p10:.2f} "
                f"base_recall={r.base_recall:.2f} base_flagged={r.base_flagged}",
                flush=True,
            )
    if not args.skip_scale:
        warm = scale("subspace", 3000, 64, 2)  # imports and numba JIT, outside the timings
        del warm
        print(f"\n== scale: one model, {args.findings} findings, {args.n} x {args.dim}")
        for g in args.generators:
            r = scale(g, args.n, args.dim, args.findings)
            print(pd.Series(r).to_string())
            print(
                f"RESULT generator={g} n={args.n} slices_s={r['slices_s']:.1f} "
                f"reduce_s={r['reduce_s']:.1f} ratio={r['ratio']:.2f} "
                f"ours_p10={r['ours_p10']:.2f} ours_recall={r['ours_recall']:.2f} "
                f"random_below_bh={r['random_below_bh']}/{r['random_tests']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
