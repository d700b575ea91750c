"""The shared sample: a seeded, stratified draw that does not depend on row order, and a shard
ledger that keeps every image in the shard it was first embedded in.

Why order-free: an archive is exported again in another order, grows every month and loses rows
(withdrawn consent). A draw by row position would move every image to another shard each time,
and every shard would be embedded again. Here each row is ranked by a seeded hash of its sampling
unit (the image id, or the patient id with `unit: patient`), and each stratum keeps its
lowest-ranked rows (bottom-k sampling). So:

- the same rows in any order, or in any file format, give the same sample;
- new rows enter the sample only where their rank beats a sampled row's (with `n: null`, all
  enter), and earlier picks stay unless displaced: the sample changes as little as the new rows
  require;
- with `unit: patient` a patient's images share a rank, so they enter or leave a stratum together.

The ledger (`results/sample/sample.parquet`) then assigns shards: an image keeps the shard it had;
new images fill new shards, in rank order; removed images leave their shard. A shard's revision
(`shard_rev`) rises only when an image is added to it or one of its images changes path, so only
those shards are embedded again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

UNITS = ("image", "patient")  # sample.unit
RANK = "sample_rank"  # the seeded hash rows are ranked by (uint64)
SHARD, REV = "shard", "shard_rev"
# what embedding reads from a sample row: a change of any of them re-embeds the image
IDENTITY = ("path", "rel_path")


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


def seeded_hash(values: pd.Series, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each value's text: the same value, the same hash, in any order,
    file format or pandas dtype (SipHash with a key made from the seed)."""
    key = f"cxratlas{seed % 10**8:08d}"
    text = values.astype("string").fillna("").to_numpy(dtype=object)
    return pd.util.hash_array(text, hash_key=key, categorize=False)


def unit_ranks(manifest: pd.DataFrame, seed: int, unit: str) -> pd.DataFrame:
    """(unit rank, image rank) per row: rows sort by both. A row without a patient id is its own
    patient."""
    if unit not in UNITS:
        raise ValueError(f"sample.unit must be one of {UNITS}, not {unit!r}")
    image = seeded_hash(manifest["image_id"], seed)
    if unit == "patient":
        if "patient_id" not in manifest.columns:
            raise KeyError(
                "sample.unit is 'patient' but the manifest has no patient_id column; map "
                "yours with dataset.columns (e.g. {patient_id: subject_id})"
            )
        pid = manifest["patient_id"].astype("string")
        who = pid.where(pid.notna(), "image:" + manifest["image_id"].astype("string"))
        primary = seeded_hash(who, seed)
    else:
        primary = image
    return pd.DataFrame({"primary": primary, "image": image}, index=manifest.index)


def _bottom(ranks: pd.DataFrame, take: int, whole_units: bool) -> np.ndarray:
    """Row labels of the `take` lowest-ranked rows; with whole units, every row of the last
    unit taken too (a stratum may then hold a few more than its share)."""
    ordered = ranks.sort_values(["primary", "image"], kind="stable")
    chosen = ordered.iloc[:take]
    if whole_units and take and take < len(ordered):
        last = chosen["primary"].iloc[-1]
        chosen = ordered.loc[ordered["primary"] <= last]
    return chosen.index.to_numpy()


def draw_sample(
    manifest: pd.DataFrame,
    n: int | None,
    seed: int,
    stratify_by: list[str] | None,
    extra: tuple[str, ...] = (),
    unit: str = "image",
) -> pd.DataFrame:
    """The sampled rows (`n` above the usable rows takes them all), ranked, without shards:
    image_id, path, what the models' file layouts read, and `sample_rank`; in rank order."""
    total = len(manifest)
    want = total if n is None else min(n, total)
    strata = list(stratify_by or [])
    absent = [c for c in strata if c not in manifest.columns]
    if absent:
        raise KeyError(
            f"sample.stratify_by names column(s) {absent} not in the manifest; "
            f"columns are {list(manifest.columns)}"
        )
    ranks = unit_ranks(manifest, seed, unit)
    if want >= total:
        chosen = manifest.index.to_numpy()
    else:
        if strata:
            keys = manifest[strata].astype("string").fillna("<missing>").agg("|".join, axis=1)
        else:
            keys = pd.Series("all", index=manifest.index)
        groups = {k: keys.index[(keys == k).to_numpy()] for k in sorted(keys.unique())}
        take = _allocate(np.array([len(g) for g in groups.values()]), want)
        chosen = np.concatenate(
            [
                _bottom(ranks.loc[g], int(t), unit == "patient")
                for g, t in zip(groups.values(), take, strict=True)
            ]
        )
    # What embedding depends on, and no more: an id, a path, the manifest's relative path (it
    # locates precomputed files), and only the ids that a model's file layout names (`extra`),
    # so a salt or a corrected patient id does not look like a new sample.
    wanted = ("rel_path", *extra)
    keep = ["image_id", "path"] + [c for c in dict.fromkeys(wanted) if c in manifest.columns]
    rows = manifest.loc[chosen, keep].copy()
    rows["image_id"] = rows["image_id"].astype(str)
    rows[RANK] = ranks.loc[chosen, "image"].to_numpy()
    order = ranks.loc[chosen].sort_values(["primary", "image"], kind="stable").index
    return rows.loc[order].reset_index(drop=True)


@dataclass
class LedgerChanges:
    """How a new ledger differs from the one before: ids, and the shards that must run again
    (`rerun`: new or revised), that only lost images (`pruned`) and that are gone."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept: int = 0
    rerun: list[int] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, object]:
        return {
            "added": len(self.added), "removed": len(self.removed),
            "changed": len(self.changed), "kept": self.kept, "rerun_shards": self.rerun,
            "pruned_shards": self.pruned, "gone_shards": self.gone,
        }  # fmt: skip

    def __str__(self) -> str:
        return (
            f"{len(self.added)} image(s) new to the sample, {len(self.removed)} removed, "
            f"{len(self.changed)} changed, {self.kept} kept"
        )


def _identity(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    return frame[columns].astype("string").fillna("").agg("\x1f".join, axis=1)


def assign_shards(
    drawn: pd.DataFrame, previous: pd.DataFrame | None, shard_size: int
) -> tuple[pd.DataFrame, LedgerChanges]:
    """The ledger for `drawn` given the one before: kept images keep their shard, new images
    fill new shards in rank order. Sorted by (shard, rank)."""
    ch = LedgerChanges()
    ledger = drawn.copy()
    if previous is None or previous.empty:
        ledger[SHARD] = np.arange(len(ledger)) // shard_size
        ledger[REV] = 0
        ch.added = ledger["image_id"].tolist()
        ch.rerun = sorted(set(ledger[SHARD].tolist()))
    else:
        prev = previous.set_index("image_id")
        ids = ledger["image_id"]
        known = ids.isin(prev.index).to_numpy()
        ledger[SHARD], ledger[REV] = -1, 0
        ledger.loc[known, SHARD] = prev.loc[ids[known], SHARD].to_numpy()
        revs = prev.groupby(SHARD)[REV].max() if REV in prev else prev.groupby(SHARD).size() * 0
        cols = [c for c in IDENTITY if c in ledger.columns and c in prev.columns]
        was = _identity(prev.loc[ids[known]].reset_index(), cols).to_numpy()
        now = _identity(ledger.loc[known], cols).to_numpy()
        changed = ledger.index[known][was != now]
        ch.changed = ledger.loc[changed, "image_id"].tolist()
        ch.kept = int(known.sum()) - len(changed)
        new = ledger.index[~known]
        first = int(prev[SHARD].max()) + 1
        ledger.loc[new, SHARD] = first + np.arange(len(new)) // shard_size
        ch.added = ledger.loc[new, "image_id"].tolist()
        removed = prev.index.difference(pd.Index(ids))
        ch.removed = removed.tolist()
        revised = set(ledger.loc[changed, SHARD].tolist())
        ledger[REV] = ledger[SHARD].map(lambda s: revs.get(s, -1) + (s in revised)).clip(0)
        ch.rerun = sorted(revised | set(ledger.loc[new, SHARD].tolist()))
        lost = set(prev.loc[removed, SHARD].tolist())
        remaining = set(ledger[SHARD].tolist())
        ch.gone = sorted(lost - remaining)
        ch.pruned = sorted((lost & remaining) - set(ch.rerun))
    ledger[SHARD] = ledger[SHARD].astype(np.int32)
    ledger[REV] = ledger[REV].astype(np.int32)
    ledger = ledger.sort_values([SHARD, RANK], kind="stable").reset_index(drop=True)
    return ledger, ch
