"""A subgroup's two costly steps at scale, ours vs the plain way, in the same process.

    python benchmarks/subgroups.py [-n 100000] [--bootstrap 1000] [--draws 1000]

- AUROC inside / outside / BNSP / BPSN with one patient bootstrap, for one classifier and
  finding. Baseline: each figure scored on its own image set with `metrics.auroc_weighted`
  over the same resamples (what four `patient_bootstrap_ci` calls would do, paired). Ours:
  `subgroup_classifiers.part_aurocs`, the four from one pass. Both must agree exactly.
- Compactness against random sets (`subgroup_placement.placement`) for one model: n images,
  k = 15 neighbours, a subgroup of 5 % of them.

Prints both times and the speed-up; a subgroup job costs about (classifiers x findings) times
the first plus (models) times the second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cxratlas.analysis.metrics import auroc_weighted  # noqa: E402
from cxratlas.analysis.probes import resample_weights  # noqa: E402
from cxratlas.analysis.subgroup_classifiers import PARTS, part_aurocs  # noqa: E402
from cxratlas.analysis.subgroup_placement import ModelSpace, placement  # noqa: E402


def data(n: int, seed: int = 0):
    """Scores that rank the positives well outside a 5 % subgroup and at random inside it;
    three images a patient."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    inside = np.arange(n) < n // 20
    score = np.where(inside, rng.normal(size=n), y + rng.normal(size=n))
    return y, score, inside, np.arange(n) // 3


def baseline(y, score, inside, patients, bootstrap: int) -> dict[str, np.ndarray]:
    part = {"in": inside, "out": ~inside}
    rows = {m: (y & part[p]) | (~y & part[q]) for m, (p, q) in PARTS.items()}
    out: dict[str, list] = {m: [] for m in PARTS}
    for w in resample_weights(patients, bootstrap, 0):
        for m, r in rows.items():
            out[m].append(auroc_weighted(y[r], score[r], w[:, r]))
    return {m: np.concatenate(v) for m, v in out.items()}


def ours(y, score, inside, patients, bootstrap: int) -> dict[str, np.ndarray]:
    order = np.argsort(score, kind="stable")
    y, score, inside, patients = y[order], score[order], inside[order], patients[order]
    blocks = [part_aurocs(y, score, inside, w) for w in resample_weights(patients, bootstrap, 0)]
    return {m: np.concatenate([b[m] for b in blocks]) for m in PARTS}


def timed(fn, *args):
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    a = ap.parse_args()
    y, score, inside, patients = data(a.n)
    plain, t_plain = timed(baseline, y, score, inside, patients, a.bootstrap)
    mine, t_mine = timed(ours, y, score, inside, patients, a.bootstrap)
    same = all(np.allclose(plain[m], mine[m], rtol=0, atol=1e-12, equal_nan=True) for m in PARTS)
    print(f"AUROC in/out/BNSP/BPSN, {a.n} images, {a.bootstrap} patient resamples: "
          f"baseline {t_plain:.1f} s, ours {t_mine:.1f} s ({t_plain / t_mine:.2f}x), "
          f"same values: {same}")  # fmt: skip
    rng = np.random.default_rng(1)
    space = ModelSpace("m", rng.integers(0, a.n, (a.n, 14)), rng.normal(size=(a.n, 2)),
                       np.full(a.n, "c0"), {"c0": "c0"})  # fmt: skip
    _, t_place = timed(placement, space, inside, a.draws, 0)
    print(f"placement, {a.n} images, a subgroup of {int(inside.sum())}, {a.draws} random sets: "
          f"{t_place:.1f} s")  # fmt: skip
    print(f"RESULT n={a.n} auroc_baseline_s={t_plain:.1f} auroc_s={t_mine:.1f} "
          f"speedup={t_plain / t_mine:.2f} same={same} placement_s={t_place:.1f}")  # fmt: skip
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
