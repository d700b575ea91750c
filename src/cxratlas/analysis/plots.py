"""Figures for the report: probe AUROCs with CIs, and pairwise model agreement heatmaps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # jobs run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cxratlas.figures import save_figure


def say_why(ax, sentence: str, fontsize: float = 9) -> None:
    """A sentence where there is nothing to plot, instead of empty axes."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, sentence, ha="center", va="center", fontsize=fontsize, wrap=True,
            transform=ax.transAxes)  # fmt: skip


def legend_beside(ax, **kwargs):
    """The legend right of the axes, top-aligned, never over the data (save the figure with
    bbox_inches="tight" so the page holds it)."""
    kwargs = {"loc": "upper left", "bbox_to_anchor": (1.02, 1), "borderaxespad": 0,
              "frameon": False, "fontsize": 8} | kwargs  # fmt: skip
    return ax.legend(**kwargs)


def text_colour_on(rgba) -> str:
    """Black or white, whichever reads better on `rgba` (WCAG contrast): at least 4.6:1 on
    any colour, where a fixed threshold on the value gives white on viridis' yellow."""
    from cxratlas.figure_check import contrast_ratio

    return "black" if contrast_ratio("black", rgba) >= contrast_ratio("white", rgba) else "white"


def annotate_cells(ax, image, values: np.ndarray, texts: np.ndarray, fontsize: float = 7):
    """Write `texts` (same shape as `values`) on a heatmap's cells, each in the colour that
    reads on its cell; NaN cells stay blank."""
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, texts[i, j], ha="center", va="center", fontsize=fontsize,
                    color=text_colour_on(image.to_rgba(v)))  # fmt: skip


def plain_log_ticks(ax, values) -> None:
    """A log x axis ticked at `values` in plain numbers ("20", "1,000", not "2x10^1"), without
    the minor ticks whose labels crowd a short axis; call `thin_tick_labels` once laid out."""
    from matplotlib.ticker import NullLocator

    values = sorted(set(values))
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:,}" for v in values])
    ax.xaxis.set_minor_locator(NullLocator())


def thin_tick_labels(ax, keep=()) -> None:
    """Hide the x tick labels that would touch a neighbour, keeping those at `keep` first,
    then from the left (a log axis of close values: 30 and 40 next to 20)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    first = [t for t in labels if t.get_position()[0] in set(keep)]
    kept: list = []
    for t in first + [t for t in labels if t not in first]:
        box = t.get_window_extent(renderer).expanded(1.15, 1.0)
        if any(box.overlaps(other) for other in kept):
            t.set_visible(False)
        else:
            kept.append(box)


def probe_plot(table: pd.DataFrame, out_path: str) -> None:
    """One panel row: per finding, each model's AUROC as a point with its 95% CI; findings
    skipped for too few positives or negatives are named under the axis. The y axis holds
    every CI (from 0.3, lower where a CI reaches lower); the legend sits beside the axes."""
    skipped = table[table.get("status", pd.Series(dtype=str)) == "skipped"]
    table = table.drop(skipped.index)
    findings = list(dict.fromkeys(table["finding"])) or ["(none)"]
    models = list(dict.fromkeys(table["model"]))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(findings), 3.6))
    if table.empty:  # every finding had too few positives or negatives in this sample
        say_why(ax, "no finding had enough positives and negatives to score a probe\n"
                    "(analysis.probes.min_positives)")  # fmt: skip
    if len(skipped):
        first = skipped.drop_duplicates("finding").itertuples()
        note = "; ".join(f"{r.finding} ({r.positives} of {r.n} positive)" for r in first)
        fig.text(0.01, 0.01, f"skipped, too few to score: {note}", fontsize=7, wrap=True)
    width = 0.8 / max(len(models), 1)
    for j, m in enumerate(models):
        sub = table[table["model"] == m].set_index("finding").reindex(findings)
        x = np.arange(len(findings)) - 0.4 + width * (j + 0.5)
        err = np.vstack([sub["auroc"] - sub["ci_low"], sub["ci_high"] - sub["auroc"]])
        ax.errorbar(x, sub["auroc"], yerr=err, fmt="o", capsize=3, label=m)
    if not table.empty:
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(findings)), findings, rotation=30, ha="right")
        low = min(0.3, float(table["ci_low"].min()) - 0.02)  # NaN-safe: min skips NaN
        ax.set_ylim(low, 1.02)  # every CI whole: an AUROC is at most 1
        ax.set_ylabel("AUROC (out-of-fold, 95% CI)")
        legend_beside(ax)
    fig.tight_layout(rect=(0, 0.06 if len(skipped) else 0, 1, 1))
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def agreement_heatmaps(pairs: pd.DataFrame, models: list[str], out_path: str) -> None:
    """Symmetric heatmaps of Jaccard@k, linear CKA and cluster ARI between every two models,
    each cell's value written in the colour that reads on it."""
    metrics = [("jaccard_k", "kNN Jaccard@k"), ("cka", "linear CKA"), ("ari", "cluster ARI")]
    fig, axes = plt.subplots(1, 3, figsize=(4 + 3.2 * 3, 0.6 * len(models) + 2.4))
    for ax, (col, title) in zip(axes, metrics, strict=True):
        M = np.eye(len(models))
        for r in pairs.itertuples():
            i, j = models.index(r.model_a), models.index(r.model_b)
            M[i, j] = M[j, i] = getattr(r, col)
        im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(models)), models if ax is axes[0] else [], fontsize=8)
        annotate_cells(ax, im, M, np.vectorize(lambda v: f"{v:.2f}")(M))
        ax.set_title(title)
    fig.colorbar(im, ax=axes, shrink=0.8)
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
