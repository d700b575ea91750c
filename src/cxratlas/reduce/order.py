"""The canonical row order a reduction runs in, so that its map, clusters and outlier scores
depend on the set of images and their vectors, never on the order the rows arrive in.

The rows of a model's embeddings arrive in the shard ledger's order, which is the archive's
history: images join the ledger as they arrive and are merged shard by shard, so the same 300
images come in one order from a fresh run and in another after 260 of them and then 40 more,
or after a prune and a re-add. Every step of a reduction follows that order somewhere: UMAP's
optimisation visits the graph row by row (the same vectors in two orders gave maps 0.05 apart
in Procrustes disparity, clusters at ARI 0.58, on 300 real images), HDBSCAN and the kNN break
ties by position, a BLAS product sums a pair differently by where its rows sit in a block, and
every seeded sample (trustworthiness, recall, the PCA fit, the k-means training rows) is drawn
by position. So a reduction sorts its rows by a seeded 64-bit hash of the image id (SipHash
keyed by `reduce.seed`, as the sample ranks rows; a tie, about one pair in 10^7 archives of a
million images, goes to the smaller id), runs in that order, and hands its results back in the
caller's. Ties between equal distances are then broken by that order too, which the ids fix.
The hash, not the id itself, because ids often carry structure (a site prefix, a date): in hash
order the first m rows are a seeded random sample chosen by id, the m lowest hashes, which is
how the landmarks are drawn (bottom-k: as the archive grows, a landmark stays one unless m new
images hash below it). At a million rows, hashing and sorting the ids took 0.35 s, and reading
the matrix straight into that order no longer than reading it as stored
(benchmarks/row_order.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


def canonical_order(ids: Sequence[str], seed: int) -> np.ndarray:
    """The positions of `ids` sorted by a seeded hash of each id, ties by the id itself."""
    from cxratlas.ingest.sample import seeded_hash

    keys = pd.Series(np.asarray(ids, dtype=object), dtype=object)
    hashes = seeded_hash(keys, seed)
    rows = np.argsort(hashes, kind="stable")
    tied = np.flatnonzero(hashes[rows][1:] == hashes[rows][:-1])
    for h in np.unique(hashes[rows[tied]]):  # colliding hashes: rare, and sorted by id
        at = np.flatnonzero(hashes[rows] == h)
        rows[at] = sorted(rows[at], key=lambda r: keys.iat[r])
    return rows


@dataclass(frozen=True)
class RowOrder:
    """How a reduction's rows are ordered: `by_id`, by `canonical_order` of their ids (else as
    the caller gave them, when it gave no ids); `rows[i]` is the caller's row at canonical
    position i (None: the caller's order is the canonical one already)."""

    by_id: bool
    rows: np.ndarray | None

    @classmethod
    def of(cls, ids: Sequence[str] | None, n: int, seed: int) -> RowOrder:
        if ids is None:
            return cls(False, None)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} image ids for {n} embeddings: they must pair up")
        duplicated = pd.Index(ids).duplicated()
        if duplicated.any():
            raise ValueError(f"image id {ids[int(np.argmax(duplicated))]!r} appears twice")
        rows = canonical_order(ids, seed)
        return cls(True, None if np.array_equal(rows, np.arange(n)) else rows)

    def canonical(self, X: np.ndarray) -> np.ndarray:
        """X's rows in canonical order (X itself where they are; else a copy)."""
        return X if self.rows is None else X[self.rows]

    def caller_rows(self, positions: np.ndarray) -> np.ndarray:
        """The caller's rows at canonical `positions`."""
        return positions if self.rows is None else self.rows[positions]

    def back(self, a: np.ndarray) -> np.ndarray:
        """Per-row values from canonical order to the caller's."""
        if self.rows is None:
            return a
        out = np.empty_like(a)
        out[self.rows] = a
        return out

    def back_graph(self, idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A kNN graph of canonical positions as one of the caller's rows, in its row order."""
        if self.rows is None:
            return idx, dist
        return self.back(self.rows[idx]), self.back(dist)


def read_canonical(path, seed: int) -> tuple[list[str], np.ndarray, dict]:
    """A model's embeddings (ids, matrix, metadata) read straight into canonical order: the
    reduction then runs on them with no second copy of the matrix."""
    import pyarrow.parquet as pq

    from cxratlas.io import read_embeddings

    ids = pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist()
    return read_embeddings(path, rows=canonical_order(ids, seed))
