"""Does the shared sample represent the archive? A "Table 1" of the manifest against the sample.

The seed study names it as its first limitation: "sampling method may not be accurate
representative of the full dataset". For every subgroup column (`subgroups.py`: sex, age band,
view, vendor, dataset, year, the user's attributes), age and every finding, the table gives the
counts and proportions in the whole manifest, in the sample and in the rows left out, and compares
the sample with the rows left out:

- a binary row (one value of a category, a finding's positives among its known labels):
  standardised mean difference (p1 - p2) / sqrt((p1 (1 - p1) + p2 (1 - p2)) / 2);
- age: (m1 - m2) / sqrt((s1^2 + s2^2) / 2);
- a category as a whole: the total variation distance 0.5 * sum |p1 - p2| over its values.

These are tableone's formulas (Yang & Dalton 2012), computed here rather than adding tableone to
every environment for two lines. |SMD| above `SMD_LIMIT` (0.1, the usual threshold) is an
imbalance: a warning on the console, in the report and in the summary. A sample that is the whole
archive has no rows left out: its rows say so and nothing is compared; one that leaves out fewer
than `MIN_REST` rows (20) keeps its SMDs but flags none (an SMD against 2 rows is noise).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cxratlas.analysis.probes import finding_labels
from cxratlas.figures import save_figure
from cxratlas.subgroups import subgroup_frame

log = logging.getLogger(__name__)

SMD_LIMIT = 0.1
MIN_REST = 20  # rows left out below which no imbalance is judged: an SMD against 2 rows is noise
MAX_LEVELS = 20  # values of one category listed, most common first; the rest are "other"
COLUMNS = ["variable", "kind", "level", "n_archive", "archive", "n_sample", "sample",
           "n_rest", "rest", "smd", "tvd", "imbalanced"]  # fmt: skip


def binary_smd(p1: float, p2: float) -> float:
    pooled = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    if pooled == 0:
        return 0.0 if p1 == p2 else np.inf
    return float((p1 - p2) / pooled)


def continuous_smd(a: pd.Series, b: pd.Series) -> float:
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0


def _share(values: pd.Series, level) -> tuple[int, float]:
    known = values.dropna()
    count = int((known == level).sum())
    return count, count / len(known) if len(known) else np.nan


def _category_rows(name: str, values: pd.Series, in_sample: np.ndarray) -> list[dict]:
    counts = values.value_counts()
    levels = list(counts.index[:MAX_LEVELS])
    if len(counts) > MAX_LEVELS:
        values = values.where(values.isin(levels) | values.isna(), "other")
        levels.append("other")
    parts = {"archive": values, "sample": values[in_sample], "rest": values[~in_sample]}
    rows = []
    for level in levels:
        row = {"variable": name, "kind": "category", "level": str(level)}
        for part, v in parts.items():
            row[f"n_{part}"], row[part] = _share(v, level)
        rows.append(row)
    compared = (~in_sample).any()
    for row in rows:
        row["smd"] = binary_smd(row["sample"], row["rest"]) if compared else np.nan
    tvd = 0.5 * sum(abs(r["sample"] - r["rest"]) for r in rows) if compared else np.nan
    for row in rows:
        row["tvd"] = tvd
    return rows


def _age_row(age: pd.Series, in_sample: np.ndarray) -> dict:
    age = pd.to_numeric(age, errors="coerce")
    s, r = age[in_sample].dropna(), age[~in_sample].dropna()
    compared = len(s) > 1 and len(r) > 1
    return {"variable": "age", "kind": "continuous", "level": "mean",
            "n_archive": int(age.notna().sum()), "archive": float(age.mean()),
            "n_sample": len(s), "sample": float(s.mean()) if len(s) else np.nan,
            "n_rest": len(r), "rest": float(r.mean()) if len(r) else np.nan,
            "smd": continuous_smd(s, r) if compared else np.nan, "tvd": np.nan}  # fmt: skip


def _finding_row(finding: str, labels: pd.Series, in_sample: pd.Series) -> dict:
    row = {"variable": finding, "kind": "finding", "level": "positive"}
    for part, ids in (("archive", labels.index), ("sample", labels.index[in_sample[labels.index]]),
                      ("rest", labels.index[~in_sample[labels.index]])):  # fmt: skip
        y = labels.loc[ids]
        row[f"n_{part}"] = int(y.sum())
        row[part] = float(y.mean()) if len(y) else np.nan
    compared = (~in_sample).any() and row["n_archive"] > 0
    row["smd"] = binary_smd(row["sample"], row["rest"]) if compared else np.nan
    row["tvd"] = np.nan
    return row


def sample_balance(
    manifest: pd.DataFrame, sample_ids: pd.Index, findings: tuple[str, ...],
    attributes: tuple[str, ...] = (),
) -> pd.DataFrame:  # fmt: skip
    """The long "Table 1": one row per category value, age and finding (`COLUMNS`).
    `manifest` is indexed by image_id."""
    in_sample = manifest.index.isin(sample_ids)
    groups = subgroup_frame(manifest, attributes).drop(columns=["age_band"], errors="ignore")
    rows = []
    if "age" in manifest:
        rows.append(_age_row(manifest["age"], in_sample))
    for name in groups.columns:
        rows += _category_rows(name, groups[name], in_sample)
    flags = pd.Series(in_sample, index=manifest.index)
    for finding in findings:
        if finding in manifest:
            rows.append(_finding_row(finding, finding_labels(manifest, finding), flags))
    table = pd.DataFrame(rows, columns=COLUMNS)
    left_out = int((~in_sample).sum())
    table["imbalanced"] = (table["smd"].abs() > SMD_LIMIT) & (left_out >= MIN_REST)
    table.attrs["left_out"] = left_out
    return table


def imbalance_line(r, strata: list[str] = ()) -> str:
    """One imbalanced row of the table, as the console, the report and the summary say it."""
    limit = f"(|SMD| {abs(r.smd):.3f} > {SMD_LIMIT})"
    if r.kind == "continuous":
        return (f"sample imbalance: {r.variable}: mean {r.sample:.1f} in the sample against "
                f"{r.rest:.1f} in the rows left out {limit}")  # fmt: skip
    what = "stratum column " if r.variable in strata else ""
    return (f"sample imbalance: {what}{r.variable}={r.level}: {r.sample:.1%} of the sample "
            f"against {r.rest:.1%} of the rows left out {limit}")  # fmt: skip


def warn_imbalance(table: pd.DataFrame, strata: list[str]) -> list[str]:
    """The console (and log) line for each imbalanced row, stratum columns named as such."""
    from cxratlas.logs import alert

    lines = [imbalance_line(r, strata) for r in table[table["imbalanced"]].itertuples()]
    left_out = table.attrs.get("left_out", MIN_REST)
    if 0 < left_out < MIN_REST:
        log.info(
            "the sample leaves out %d row(s) of the archive: fewer than %d, so its balance "
            "against them is not judged (their SMDs stay in the table)",
            left_out,
            MIN_REST,
        )
    for line in lines:
        alert(log, "%s", line)
    return lines


def love_plot(
    table: pd.DataFrame, out_path: str, title: str = "",
    xlabel: str = "|standardised mean difference|, sample vs rows left out",
) -> None:  # fmt: skip
    """|SMD| of every row, sample against the rows left out (or what `xlabel` says), with the
    0.1 line."""
    from cxratlas.analysis.plots import plt

    rows = table.dropna(subset=["smd"])
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.22 * max(len(rows), 1)))
    if rows.empty:
        ax.text(0.5, 0.5, "the sample is the whole archive: nothing left out to compare",
                ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
    else:
        labels = [f"{r.variable}" if r.kind != "category" else f"{r.variable} = {r.level}"
                  for r in rows.itertuples()]  # fmt: skip
        y = np.arange(len(rows))[::-1]
        colour = np.where(rows["imbalanced"], "tab:red", "tab:blue")
        size = rows["smd"].abs().to_numpy()
        # past 1 the axis would squash the rows that matter near 0.1: such a point is drawn
        # at 1 as a triangle, with its value written beside it
        over = size > 1.0
        ax.scatter(size[~over], y[~over], c=colour[~over], zorder=3)
        ax.scatter(np.ones(over.sum()), y[over], c=colour[over], marker=">", zorder=3)
        for yi, v in zip(y[over], size[over], strict=True):
            ax.text(1.03, yi, f"{v:.2f}", va="center", fontsize=7)
        ax.axvline(SMD_LIMIT, color="grey", ls="--", lw=0.8)
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlim(0, 1.2 if over.any() else max(0.3, float(size.max()) * 1.1))
        ax.set_xlabel(xlabel + (" (▶: above 1, value beside it)" if over.any() else ""))
    ax.set_title(title or "Does the sample represent the archive? (red: |SMD| > 0.1)", fontsize=9)
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
