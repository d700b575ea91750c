"""A subgroup's figures: where it sits on every model's map, how every classifier does inside
it against outside, and its Table 1 as a Love plot."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from cxratlas.analysis.subgroup_placement import p_text
from cxratlas.figures import save_figure

# a subgroup's Table 1 is the sample-balance table with its columns named for members and all
TABLE1_NAMES = {"n_archive": "n_all", "archive": "all", "n_sample": "n_members",
                "sample": "members", "imbalanced": "differs"}  # fmt: skip


def placement_figure(spaces, mask: np.ndarray, placement: pd.DataFrame, title: str,
                     out_path: str) -> None:  # fmt: skip
    """One panel per model: every analysed image in grey, the members on top in red; the
    title gives the compactness against random sets of the same size."""
    from cxratlas.analysis.plots import plt

    rows = placement.set_index("model")
    fig, axes = plt.subplots(1, len(spaces), figsize=(4.2 * len(spaces), 4.6), squeeze=False)
    size = float(np.clip(3000 / len(mask), 1, 12))
    for ax, space in zip(axes[0], spaces, strict=True):
        ax.scatter(*space.xy[~mask].T, s=size, c="lightgrey", lw=0, rasterized=True)
        ax.scatter(*space.xy[mask].T, s=size * 1.5, c="tab:red", lw=0, rasterized=True)
        r = rows.loc[space.model]
        ax.set_title(
            f"{space.model}\nkNN share {r.knn_share:.2f} (random {r.knn_null_mean:.2f}), "
            f"{p_text(r.knn_p, r.random_sets, short=True)}\nspread {r.spread_ratio:.2f} × "
            f"random, {p_text(r.spread_p, r.random_sets, short=True)}",
            fontsize=8,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_path, dpi=110)
    plt.close(fig)


MARKERS = {  # figure: (label, marker, colour, offset)
    "auroc_in": ("inside", "o", "tab:red", -0.24),
    "auroc_out": ("outside", "o", "grey", -0.08),
    "bnsp": ("BNSP: positives inside vs negatives outside", "^", "tab:blue", 0.08),
    "bpsn": ("BPSN: positives outside vs negatives inside", "s", "tab:green", 0.24),
}


def performance_figure(performance: pd.DataFrame, title: str, out_path: str) -> None:
    """A row per classifier and finding: AUROC inside and outside the subgroup, BNSP and BPSN,
    each with its 95% patient-bootstrap CI; rows with nothing to score are named below."""
    from cxratlas.analysis.plots import plt

    shown = performance[performance["status"] == "scored"].reset_index(drop=True)
    skipped = performance[performance["status"] != "scored"]
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.42 * max(len(shown), 1)))
    y = np.arange(len(shown))[::-1]
    for metric, (label, marker, colour, offset) in MARKERS.items():
        v = shown[metric].to_numpy(float)
        err = np.vstack([v - shown[f"{metric}_low"], shown[f"{metric}_high"] - v])
        ax.errorbar(v, y + offset, xerr=err, fmt=marker, color=colour, ms=4, capsize=2,
                    lw=0.8, label=label)  # fmt: skip
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, [f"{r.classifier} · {r.finding}" for r in shown.itertuples()], fontsize=7)
    lows = shown[[f"{m}_low" for m in MARKERS]].to_numpy(float)
    low = np.nanmin(lows, initial=0.3) if lows.size else 0.3
    ax.set_xlim(max(0.0, min(0.3, low - 0.02)), 1.02)  # every CI whole, points at 1.0 too
    ax.set_xlabel("AUROC (95% patient-bootstrap CI)")
    if shown.empty:
        ax.text(0.65, 0, "no classifier could be scored on this subgroup", ha="center")
    ax.legend(fontsize=6, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False)
    if len(skipped):  # under the axis label; the tight bounding box takes it in
        names = ", ".join(f"{r.classifier} · {r.finding}" for r in skipped.itertuples())
        note = textwrap.fill(f"too few to score: {names}", 150)
        ax.annotate(note, xy=(0, 0), xycoords="axes fraction", xytext=(-150, -34),
                    textcoords="offset points", va="top", fontsize=6)  # fmt: skip
    fig.suptitle(title, fontsize=9, y=0.995)
    fig.tight_layout()
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def table1_figure(table1: pd.DataFrame, title: str, out_path: str) -> None:
    """The Love plot of the subgroup's Table 1 (members against the rest)."""
    from cxratlas.analysis.representativeness import love_plot

    back = {v: k for k, v in TABLE1_NAMES.items()}
    love_plot(table1.rename(columns=back), out_path, title=title,
              xlabel="|standardised mean difference|, members vs the rest")  # fmt: skip
