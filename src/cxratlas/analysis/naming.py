"""A name for every cluster, from what it is made of: "c3 · LATERAL · site B 80% · effusion ×3.1".

The name is what the atlas (`cluster_label_<model>`), the contact sheets, the maps and the
summary call a cluster, so a reader filters by meaning, not by number. It is built from the
cluster's enrichment (`enrichment.py`), in this order:

- categorical values the cluster is dominated by, more than the sample is: a share of at least
  `MIN_SHARE` and `MIN_LIFT` times the value's share in the whole sample (a view is named by its
  value alone, "LATERAL"; any other column as "site B 80%"); at most `MAX_VALUES`, by lift;
- the finding most enriched in it: Benjamini-Hochberg-adjusted p below `ALPHA` and a prevalence
  `MIN_RATIO` times the prevalence outside ("effusion ×3.1");
- "mixed" when neither applies. The cluster id leads, so names are unique and stay with the id
  (ids survive reruns: `reduce/stability.py`).

Each cluster also gets a short label, the same parts without shares and ratios and with a
vendor or dataset by its value alone ("c3 · LATERAL · site B · effusion"): what the atlas shows
in its legends and count plots, which cut a category past about 35 characters. The report, the
maps' keys and the contact sheets use the full name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_SHARE = 0.6
MIN_LIFT = 1.25
MAX_VALUES = 2
ALPHA = 0.05
MIN_RATIO = 1.5
SEP = " · "
VALUE_ONLY = ("view_position",)  # "LATERAL" needs no column name
BARE_IN_LABEL = ("view_position", "manufacturer", "dataset")  # values that name themselves
NAME_COLUMNS = ("view_position", "dataset", "manufacturer", "sex")  # then the user's attributes


def value_descriptors(mask: np.ndarray, meta: pd.DataFrame, columns: tuple[str, ...]) -> list:
    """(name text, label text) for the columns whose most common value dominates the group,
    strongest first."""
    out = []
    for col in columns:
        if col not in meta:
            continue
        values = meta[col].astype("string")
        known = values.notna() & (values != "unknown")
        inside = values[mask & known.to_numpy()].value_counts()
        if inside.empty:
            continue
        value, count = inside.index[0], int(inside.iloc[0])
        share = count / inside.sum()
        overall = float((values[known] == value).mean())
        lift = share / overall if overall else np.inf
        if share >= MIN_SHARE and lift >= MIN_LIFT:
            text = str(value) if col in VALUE_ONLY else f"{col} {value} {share:.0%}"
            label = str(value) if col in BARE_IN_LABEL else f"{col} {value}"
            out.append((col not in VALUE_ONLY, -lift, text, label))
    # by lift, but a view leads: it is what a reader sees first in the images
    return [(text, label) for *_, text, label in sorted(out)[:MAX_VALUES]]


def finding_descriptor(rows: pd.DataFrame) -> tuple[str, str]:
    """(name text, label text) of the most enriched finding of one group's enrichment rows, or
    empty texts."""
    rows = rows[(rows["kind"] == "finding") & (rows["p_adjusted"] < ALPHA)]
    rows = rows[rows["prevalence_in"] > 0]
    if rows.empty:
        return "", ""
    ratio = rows["prevalence_in"] / rows["prevalence_out"].replace(0, np.nan)
    ratio = ratio.fillna(np.inf)
    best = ratio.idxmax()
    if ratio[best] < MIN_RATIO:
        return "", ""
    times = "only here" if np.isinf(ratio[best]) else f"×{ratio[best]:.1f}"
    finding = rows.at[best, "finding"]
    return f"{finding} {times}", str(finding)


def cluster_names(
    membership: dict[str, np.ndarray],
    meta: pd.DataFrame,
    enrichment: pd.DataFrame,
    attributes: tuple[str, ...] = (),
) -> tuple[dict[str, str], dict[str, str]]:
    """(names, labels): group ("c3", "noise", "outliers") -> its name and its short label;
    `meta` rows line up with the masks."""
    columns = tuple(dict.fromkeys((*NAME_COLUMNS[:1], *attributes, *NAME_COLUMNS[1:])))
    names, labels = {}, {}
    for group, mask in membership.items():
        if not group.startswith("c"):
            names[group] = labels[group] = group
            continue
        parts = value_descriptors(mask, meta, columns)
        finding = finding_descriptor(enrichment[enrichment["group"] == group])
        parts += [finding] if finding[0] else []
        parts = parts or [("mixed", "mixed")]
        names[group] = SEP.join([group, *(text for text, _ in parts)])
        labels[group] = SEP.join([group, *(label for _, label in parts)])
    return names, labels
