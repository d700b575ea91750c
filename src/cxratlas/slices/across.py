"""Across models: every (classifier, model) job's slices in one table, its p-values adjusted,
the slices that recur in several models' spaces joined, and which model's map isolates a
classifier's errors.

- `p_adj`: Benjamini-Hochberg over every scored slice of a classifier (its findings, models,
  mixture slices, map clusters and manifest values): one family per classifier, so adding a
  classifier changes no other's numbers. `flagged`: below `alpha` and an AUROC drop of
  `min_drop` or more (a large sample makes a drop of 0.01 significant; it is not where a
  classifier fails). Only flagged slices reach the atlas, the strips and the leads.
- `recurrence`: significant slices of one classifier and finding whose members overlap (Jaccard
  at least `recur_jaccard`, over the halves both were assessed on) are one finding, e.g.
  "pneumonia r1"; `recurs_in` counts the models whose spaces hold it.
- the isolation table, per classifier, finding and model: how many slices are flagged, the
  largest AUROC drop and error lift among them, `errors_isolated`, the share of all the
  classifier's errors (at its threshold) that they hold together, `images_held`, the share of
  the images they hold, and `isolation`, the first minus the second (0: no better than as many
  images drawn at random; 1: every error in a vanishing share of the images); `rank` orders
  the models by it: the map that shows where the classifier fails.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxratlas.analysis.metrics import bh_adjust
from cxratlas.slices.run import (
    FINDING_COLUMNS,
    MEMBER_COLUMNS,
    SCORED,
    TABLE_COLUMNS,
    AcrossSettings,
)
from cxratlas.slices.search import ATTRIBUTE

ISOLATION_COLUMNS = ["classifier", "finding", "model", "n_images", "errors", "slices_flagged",
                     "best_slice", "best_drop", "best_lift", "errors_isolated", "images_held",
                     "isolation", "rank", "status", "reason"]  # fmt: skip


def significant(table: pd.DataFrame, alpha: float | None = None) -> pd.Series:
    """The flagged slices of a combined table (`alpha`: ask p_adj alone instead)."""
    if alpha is not None:
        return (table["status"] == SCORED) & (table["p_adj"] < alpha)
    return table["flagged"].fillna(False).astype(bool)


def adjust(table: pd.DataFrame, s: AcrossSettings) -> pd.DataFrame:
    """`p_adj`: BH over each classifier's scored slices; `flagged` (module docstring)."""
    table = table.copy()
    table["p_adj"] = np.nan
    for _, rows in table[table["status"] == SCORED].groupby("classifier"):
        table.loc[rows.index, "p_adj"] = bh_adjust(rows["p"].to_numpy(float))
    table["flagged"] = (table["p_adj"] < s.alpha) & (table["drop"] >= s.min_drop)
    return table


def _halves(found_on: str) -> set[int]:
    """The halves a slice was assessed on (a slice found on half 1 is tested on half 2)."""
    return {2} if found_on == "half 1" else {1} if found_on == "half 2" else {1, 2}


def _overlap(a: pd.DataFrame, b: pd.DataFrame, halves: set[int]) -> float:
    ia = set(a.loc[a["half"].isin(halves), "image_id"])
    ib = set(b.loc[b["half"].isin(halves), "image_id"])
    return len(ia & ib) / len(ia | ib) if ia | ib else 0.0


def _components(n: int, linked) -> list[int]:
    """Each of `n` items' group (the smallest item in it): union-find over `linked(i, j)`."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if linked(i, j):
                parent[max(root(i), root(j))] = min(root(i), root(j))
    return [root(i) for i in range(n)]


def recurrence(table: pd.DataFrame, members: pd.DataFrame, s: AcrossSettings) -> pd.DataFrame:
    """`recurrence` and `recurs_in` of every significant slice (union-find over overlaps)."""
    table = table.copy()
    table["recurrence"], table["recurs_in"] = "", 0
    sig = table[significant(table)]
    key = ["classifier", "finding", "model", "slice"]
    by_slice = {k: g for k, g in members.groupby(key, sort=False)}
    for (_, finding), rows in sig.groupby(["classifier", "finding"], sort=False):
        keys = [tuple(r) for r in rows[key].itertuples(index=False)]
        found = rows["found_on"].tolist()

        def linked(i, j, keys=keys, found=found):
            # a manifest value is the same images in every space: it is one finding with its
            # own copies, never joined to a slice a map found (that would credit the map)
            if (found[i] == ATTRIBUTE) != (found[j] == ATTRIBUTE):
                return False
            if found[i] == ATTRIBUTE:
                return keys[i][3] == keys[j][3]
            both = _halves(found[i]) & _halves(found[j])
            a, b = by_slice.get(keys[i]), by_slice.get(keys[j])
            return bool(both) and a is not None and b is not None and \
                _overlap(a, b, both) >= s.recur_jaccard  # fmt: skip

        root = _components(len(keys), linked)
        groups = pd.Series(root, index=rows.index)
        order = rows.groupby(groups)["drop"].max().sort_values(ascending=False).index
        number = {g: n + 1 for n, g in enumerate(order)}
        for g, idx in groups.groupby(groups).groups.items():
            table.loc[idx, "recurrence"] = f"{finding} r{number[g]}"
            table.loc[idx, "recurs_in"] = table.loc[idx, "model"].nunique()
    return table


def isolation(table: pd.DataFrame, members: pd.DataFrame, findings: pd.DataFrame,
              s: AcrossSettings) -> pd.DataFrame:  # fmt: skip
    """Per classifier, finding and model: how well the model's space isolates the errors
    (its mixture slices and map clusters: a manifest value's slice is the same in every
    space, so it says nothing of one)."""
    sig = table[significant(table) & (table["method"] != "attribute")]
    key = ["classifier", "finding", "model"]
    has_scored = set(table.loc[table["status"] == SCORED, key].itertuples(index=False, name=None))
    reasons = table[table["status"] != SCORED].drop_duplicates(key).set_index(key)["reason"]
    rows = []
    for f in findings.itertuples(index=False):
        k = (f.classifier, f.finding, f.model)
        own = sig[(sig["classifier"] == k[0]) & (sig["finding"] == k[1]) & (sig["model"] == k[2])]
        row = {"classifier": k[0], "finding": k[1], "model": k[2], "n_images": f.n_images,
               "errors": f.errors, "slices_flagged": len(own)}  # fmt: skip
        if k not in has_scored:
            rows.append({**row, "status": "skipped", "reason": reasons.get(k, "")})
            continue
        best = own.loc[own["drop"].idxmax()] if len(own) else None
        held = members.merge(own[["classifier", "finding", "model", "slice"]])
        caught = held.loc[held["error"].astype(bool), "image_id"].nunique()
        share = caught / f.errors if f.errors else np.nan
        held_share = held["image_id"].nunique() / f.n_images if f.n_images else np.nan
        rows.append({**row, "best_slice": best["slice"] if best is not None else "",
                     "best_drop": best["drop"] if best is not None else np.nan,
                     "best_lift": best["error_lift"] if best is not None else np.nan,
                     "errors_isolated": share, "images_held": held_share,
                     "isolation": share - held_share, "status": SCORED,
                     "reason": ""})  # fmt: skip
    out = pd.DataFrame(rows, columns=ISOLATION_COLUMNS)
    scored = out["status"] == SCORED
    out.loc[scored, "rank"] = (out[scored].groupby(["classifier", "finding"])["isolation"]
                               .rank(ascending=False, method="min"))  # fmt: skip
    return out


def combine(
    tables: list[pd.DataFrame],
    members: list[pd.DataFrame],
    findings: list[pd.DataFrame],
    s: AcrossSettings,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(slices, members, isolation) over every (classifier, model) job."""
    table = pd.concat([t for t in tables if len(t)] or [pd.DataFrame(columns=TABLE_COLUMNS)],
                      ignore_index=True)  # fmt: skip
    member = pd.concat([m for m in members if len(m)] or [pd.DataFrame(columns=MEMBER_COLUMNS)],
                       ignore_index=True)  # fmt: skip
    finding = pd.concat([f for f in findings if len(f)]
                        or [pd.DataFrame(columns=FINDING_COLUMNS)], ignore_index=True)  # fmt: skip
    table = recurrence(adjust(table, s), member, s)
    iso = isolation(table, member, finding, s)
    # members of every mixture slice; a map cluster's only where it is significant (the
    # others are the atlas's cluster_<model> column already)
    sig = table.loc[significant(table) | (table["method"] == "mixture"),
                    ["classifier", "finding", "model", "slice"]]  # fmt: skip
    member = member.merge(sig, how="inner")
    return table[TABLE_COLUMNS], member[MEMBER_COLUMNS], iso
