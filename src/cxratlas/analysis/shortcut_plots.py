"""Figures of the bias and shortcut audit: what the embeddings decode, per-subgroup gaps, and the
pooled / within-site / metadata-only AUROC of each finding with its flag."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxratlas.analysis.plots import annotate_cells, legend_beside, plt, say_why
from cxratlas.figures import save_figure

NOTE_COLOUR = "dimgrey"  # 5.5:1 on white; matplotlib's "grey" is 3.9:1, below WCAG AA


NOT_SCORED = "#c8c8c8"  # a cell with no number: grey, unlike any colour of the scale


def _heatmap(ax, M: pd.DataFrame, fmt: str, vmin: float, vmax: float, marks=None,
             cmap: str = "magma"):  # fmt: skip
    values = M.to_numpy(float)
    scale = plt.get_cmap(cmap).with_extremes(bad=NOT_SCORED)
    im = ax.imshow(np.ma.masked_invalid(values), vmin=vmin, vmax=vmax, cmap=scale, aspect="auto")
    ax.set_xticks(range(M.shape[1]), M.columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(M.shape[0]), M.index, fontsize=8)
    starred = marks.to_numpy(bool) if marks is not None else np.zeros(values.shape, bool)
    texts = np.array([[format(v, fmt) + ("*" if s else "") for v, s in zip(r, m, strict=True)]
                      for r, m in zip(values, starred, strict=True)])  # fmt: skip
    annotate_cells(ax, im, values, texts)
    return im


def attribute_heatmap(table: pd.DataFrame, out_path: str) -> None:
    """Models x attributes: out-of-fold AUROC of decoding each attribute from the embeddings
    (the age row in years of MAE is in the table only)."""
    sub = table[table["metric"] != "mae_years"]
    fig, ax = plt.subplots(figsize=(2.5 + 0.8 * max(sub["attribute"].nunique(), 1),
                                    1.6 + 0.45 * max(sub["model"].nunique(), 1)))  # fmt: skip
    if sub.empty:
        say_why(ax, "no attribute had two values with enough images\n"
                    "(analysis.probes.min_positives)")  # fmt: skip
    else:
        M = sub.pivot(index="model", columns="attribute", values="value")
        fig.colorbar(_heatmap(ax, M, ".2f", 0.5, 1.0), ax=ax, shrink=0.8, label="AUROC")
        ax.set_title("What the embeddings encode besides disease", fontsize=10)
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def gap_heatmap(gaps: pd.DataFrame, out_path: str) -> None:
    """(finding, model) x subgroup column: best minus worst subgroup AUROC; * where the two
    CIs do not overlap."""
    rows = len(gaps.groupby(["finding", "model"])) if len(gaps) else 1
    fig, ax = plt.subplots(
        figsize=(2.5 + 0.8 * max(gaps["attribute"].nunique(), 1), 1.6 + 0.4 * rows)
    )
    if gaps.empty:
        say_why(ax, "no subgroup column had two groups with enough positives and negatives\n"
                    "(analysis.shortcuts.min_group)")  # fmt: skip
    else:
        g = gaps.assign(row=gaps["finding"] + " / " + gaps["model"])
        M = g.pivot(index="row", columns="attribute", values="gap")
        marks = g.pivot(index="row", columns="attribute", values="separated").fillna(False)
        # the scale reaches the largest gap (darkest), so no gap is past its end
        top = max(0.3, np.ceil(float(np.nanmax(M.to_numpy(float), initial=0)) * 20) / 20)
        fig.colorbar(_heatmap(ax, M, ".2f", 0.0, top, marks, cmap="magma_r"), ax=ax,
                     shrink=0.8, label="AUROC gap\n(best - worst subgroup)")  # fmt: skip
        ax.set_title("Subgroup gaps (* CIs separate; grey: not scored)", fontsize=10)
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def confounding_plot(table: pd.DataFrame, out_path: str) -> None:
    """Per finding and model: pooled, within-site and metadata-only AUROC; flagged rows red;
    findings skipped for too few positives or negatives are rows that say so. The legend sits
    beside the axes, the x axis holds every AUROC drawn."""
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.42 * max(len(table), 1)))
    if table.empty:
        say_why(ax, "no finding had enough positives and negatives "
                    "(analysis.probes.min_positives)")  # fmt: skip
        save_figure(fig, out_path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return
    y = np.arange(len(table))[::-1]
    site = table["site"].iloc[0] or "site"
    columns = ["pooled_auroc", "within_site_auroc", "metadata_auroc"]
    low = min(0.3, float(np.nanmin(table[columns].to_numpy(float), initial=1.0)) - 0.03)
    skipped = table.get("status", pd.Series("", index=table.index)) == "skipped"
    for yy, r in zip(y[skipped.to_numpy()], table[skipped].itertuples(), strict=True):
        ax.text(low + 0.02, yy, f"skipped: {r.positives} of {r.n} positive", fontsize=7,
                va="center", color=NOTE_COLOUR)  # fmt: skip
    for col, marker, label in zip(columns, "osx", ("pooled", f"within {site}", "metadata only"),
                                  strict=True):  # fmt: skip
        ax.scatter(table[col], y, marker=marker, label=label, zorder=3)
    # a finding the images do not predict above chance is not audited: marked, not left to
    # look like a large metadata gap that passed
    unaudited = table.get("reason", pd.Series("", index=table.index)).astype(str).str.contains(
        "not above chance") & ~table["flagged"].astype(bool)  # fmt: skip
    marks = np.where(table["flagged"].astype(bool), "! ", np.where(unaudited, "? ", ""))
    labels = [f"{m}{r.finding} / {r.model}" for m, r in zip(marks, table.itertuples(),
                                                            strict=True)]  # fmt: skip
    ax.set_yticks(y, labels, fontsize=8)
    for tick, mark in zip(ax.get_yticklabels(), marks, strict=True):
        tick.set_color({"! ": "tab:red", "? ": NOTE_COLOUR}.get(mark, "k"))
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlim(low, 1.02)
    ax.set_ylim(-0.6, len(table) - 0.4)  # every row inside the frame, skipped ones too
    ax.set_xlabel("AUROC (out-of-fold)")
    ax.set_title("Is it the disease or the site?\n(! possible shortcut; ? not audited: the "
                 "images' AUROC is not above chance)", fontsize=10)  # fmt: skip
    legend_beside(ax)
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
