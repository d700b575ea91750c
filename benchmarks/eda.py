"""EDA on a generated 2.4M-row manifest (Emory CXR's size): ours vs a row loop, same process.

    python benchmarks/eda.py [-n 2400000]

Baseline: the loop a user writes first, `for row in df.itertuples()` updating Counters for the
same sections. Prints both times, the speed-up, and checks both give the same view counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cxratlas.analysis.eda import eda_table  # noqa: E402
from cxratlas.io import ManifestColumns  # noqa: E402


def manifest(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    patients = rng.integers(0, n // 6, n)
    labels = pd.array(rng.choice([1, 0, -1, -9], n, p=[0.15, 0.6, 0.05, 0.2]), "Int8")
    labels[labels == -9] = pd.NA
    return pd.DataFrame(
        {
            "image_id": np.arange(n).astype(str),
            "patient_id": patients,
            "study_id": patients * 4 + rng.integers(0, 4, n),
            "view_position": pd.Categorical(rng.choice(["PA", "AP", "LATERAL", None], n)),
            "manufacturer": pd.Categorical(rng.choice(["GE", "Philips", "Siemens", "Fujifilm"], n)),
            "sex": pd.Categorical(rng.choice(["F", "M"], n)),
            "age": rng.integers(18, 95, n),
            "study_year": rng.integers(2005, 2024, n),
            "pneumonia": labels,
            "cardiomegaly": labels[rng.permutation(n)],
        }
    )


def row_loop(df: pd.DataFrame) -> dict[str, Counter]:
    out: dict[str, Counter] = {c: Counter() for c in ("view_position", "manufacturer", "sex")}
    per_study: Counter = Counter()
    for row in df.itertuples(index=False):
        for c in out:
            out[c][getattr(row, c)] += 1
        per_study[row.study_id] += 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2_400_000)
    args = parser.parse_args()
    # as ingest records them: the label columns are findings
    df = ManifestColumns(findings=("pneumonia", "cardiomegaly")).tag(manifest(args.n))
    t0 = time.perf_counter()
    table = eda_table(df)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = row_loop(df)
    base = time.perf_counter() - t0
    views = table[table["section"] == "view_position"].set_index("key")["count"]
    assert views.get("PA") == loop["view_position"]["PA"], "the two disagree"
    print(f"{'n':>10} {'method':<10} {'time_s':>8}")
    print(f"{args.n:>10} {'row_loop':<10} {base:>8.2f}")
    print(f"{args.n:>10} {'ours':<10} {ours:>8.2f}")
    print(f"speedup (row loop / ours): {base / ours:.1f}x on {len(table)} counts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
