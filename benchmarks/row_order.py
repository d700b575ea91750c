"""What the canonical row order costs the reduce step: reading a model's merged embeddings
straight into it, against reading them as stored, in the same process.

    python benchmarks/row_order.py [--n 1000000] [--dim 768] [--repeats 2] [--workdir DIR]

Writes a merged embedding file as the merge job does (float16, rows in shard order, ids
`img00000000` ... in that order, so the canonical order, a seeded hash of the id, scatters
every row), then, alternating, `repeats` times each, each in a process of its own (as the
reduce job is; in one process the Arrow memory pool carries over from run to run):
- baseline: `io.read_embeddings` (the rows as stored, what the reduce job read before);
- ours: `reduce.order.read_canonical` (the ids read, hashed and sorted, then every batch's rows
  written straight to their places) and `RowOrder.of`, the check `reduce_embeddings` makes
  with the ids (it finds the rows in order and copies nothing).
Prints each run's seconds and peak resident memory above the start as a multiple of the
float32 matrix, and `RESULT n=<n> ratio=<ours / baseline, best of each> extra_s=<ours -
baseline> peak_ratio=<ours / baseline>`. The 1M reduce step it adds to took 187 s
(README, "A million vectors on one machine").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cxratlas.io import embedding_table, parquet_options, read_embeddings  # noqa: E402
from cxratlas.memory import peak_rss_mib, reset_peak, rss_mib  # noqa: E402
from cxratlas.reduce.order import RowOrder, read_canonical  # noqa: E402

SEED = 42  # reduce.seed's default
BLOCK = 50_000  # rows per shard, as benchmarks/scale.py writes them


def write_merged(path: Path, n: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, n, BLOCK):
        rows = min(BLOCK, n - start)
        ids = [f"img{i:08d}" for i in range(start, start + rows)]
        vectors = rng.standard_normal((rows, dim), dtype=np.float32)
        table = embedding_table(ids, vectors, {"model": "synthetic"}, storage="float16")
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, **parquet_options(table.schema))
        writer.write_table(table)
    writer.close()


def measured(fn) -> tuple[float, float]:
    """(seconds, peak MiB above the start) of fn()."""
    reset_peak()
    base = rss_mib()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, peak_rss_mib() - base


def baseline(path: Path) -> None:
    read_embeddings(path)


def ours(path: Path) -> None:
    ids, X, _ = read_canonical(path, SEED)
    assert RowOrder.of(ids, len(X), SEED).rows is None  # reduce_embeddings copies nothing


STEPS = {"baseline": baseline, "ours": ours}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cxratlas-row-order"))
    parser.add_argument("--step", nargs=2, help=argparse.SUPPRESS)  # one read, in its own process
    args = parser.parse_args()
    if args.step:
        name, path = args.step
        print(*measured(lambda: STEPS[name](Path(path))))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"merged-{args.n}x{args.dim}.parquet"
    if not path.exists():
        write_merged(path, args.n, args.dim)
    matrix = args.n * args.dim * 4 / 2**20
    times: dict[str, list[tuple[float, float]]] = {"baseline": [], "ours": []}
    for _ in range(args.repeats):
        for name in times:
            out = subprocess.run([sys.executable, __file__, "--step", name, str(path)],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            s, peak = map(float, out.split())
            times[name].append((s, peak))
            print(f"{name:8s} {s:7.2f} s  peak {peak / matrix:.2f} x matrix", flush=True)
    best = {k: min(t for t, _ in v) for k, v in times.items()}
    peak = {k: max(p for _, p in v) for k, v in times.items()}
    print(f"RESULT n={args.n} ratio={best['ours'] / best['baseline']:.3f} "
          f"extra_s={best['ours'] - best['baseline']:.2f} "
          f"peak_ratio={peak['ours'] / peak['baseline']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
