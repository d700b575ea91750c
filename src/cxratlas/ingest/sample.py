"""One seeded, optionally stratified sample of image ids for every model, with a shard index."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def n_shards(n_images: int, shard_size: int) -> int:
    """How many (model, shard) jobs a sample of `n_images` needs; at least one."""
    return max(1, math.ceil(n_images / shard_size))


def _allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """Largest-remainder proportional allocation of `n` draws over strata of `sizes`."""
    quota = sizes / sizes.sum() * n
    take = np.minimum(np.floor(quota).astype(int), sizes)
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    for i in order:
        if take.sum() >= n:
            break
        if take[i] < sizes[i]:
            take[i] += 1
    while take.sum() < n:  # strata that ran out leave room in the others
        room = np.flatnonzero(take < sizes)
        take[room[0]] += 1
    return take


def draw_sample(
    manifest: pd.DataFrame,
    n: int | None,
    seed: int,
    stratify_by: list[str] | None,
    shard_size: int,
    extra: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Draw the shared sample and assign shards (`n` above the usable rows takes them all)."""
    rng = np.random.default_rng(seed)
    total = len(manifest)
    want = total if n is None else min(n, total)
    strata = list(stratify_by or [])
    absent = [c for c in strata if c not in manifest.columns]
    if absent:
        raise KeyError(
            f"sample.stratify_by names column(s) {absent} not in the manifest; "
            f"columns are {list(manifest.columns)}"
        )
    if strata and want < total:
        keys = manifest[strata].astype("string").fillna("<missing>").agg("|".join, axis=1)
        groups = {k: np.flatnonzero((keys == k).to_numpy()) for k in sorted(keys.unique())}
        sizes = np.array([len(g) for g in groups.values()])
        take = _allocate(sizes, want)
        chosen = np.concatenate(
            [rng.choice(g, t, replace=False) for g, t in zip(groups.values(), take, strict=True)]
        )
    else:
        chosen = rng.choice(total, want, replace=False)
    # Shuffle so every shard mixes strata (similar cost per shard), then number rows.
    chosen = rng.permutation(chosen)
    # What embedding depends on, and no more: an id, a path, the manifest's relative path (it
    # locates precomputed files), and only the ids that a model's file layout names (`extra`),
    # so a salt or a corrected patient id does not look like a new sample.
    wanted = ("rel_path", *extra)
    keep = ["image_id", "path"] + [c for c in dict.fromkeys(wanted) if c in manifest.columns]
    sample = manifest.iloc[chosen][keep].reset_index(drop=True)
    sample["shard"] = (np.arange(len(sample)) // shard_size).astype(np.int32)
    return sample
