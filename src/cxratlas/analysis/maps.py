"""Maps as pictures: each model's map with its clusters coloured and named, its outliers marked,
and small multiples of the same map coloured by view, site or dataset and by each finding.

Drawn with matplotlib (datamapplot 0.7 would add datashader, dask, numba and scikit-image to
every environment and asks fonts.googleapis.com for its fonts, which a cluster node cannot
reach). Points are rasterised inside the SVG, so a million-point map stays a small file while
names and axes stay text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxratlas.analysis.plots import plt
from cxratlas.atlas.labels import map_labels
from cxratlas.subgroups import subgroup_frame

NOISE_COLOUR = "#d0d0d0"
LABEL_STATES = {1: "positive", 0: "negative", -1: "uncertain"}
STATE_COLOURS = {"positive": "#d62728", "negative": "#9ecae1", "uncertain": "#ff7f0e",
                 "unknown": "#eeeeee"}  # fmt: skip
MAX_CATEGORIES = 10  # values coloured in a small multiple; the rest are "other"
PANEL_ORDER = ("view_position", "site", "dataset", "manufacturer", "sex", "age_band")


def _point_size(n: int) -> float:
    return float(np.clip(4000 / max(n, 1), 0.3, 12))


def _scatter(ax, x, y, colours, n: int) -> None:
    ax.scatter(x, y, c=colours, s=_point_size(n), linewidths=0, rasterized=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")


def _place_names(ax, labels: pd.DataFrame, max_names: int = 25) -> int:
    """Draw the largest clusters' names, skipping any whose box would overlap one drawn."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn: list = []
    # a pale box, not a stroke path effect: that would turn the SVG's text into outlines
    halo = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75}
    for r in labels.sort_values("priority", ascending=False).head(max_names).itertuples():
        text = ax.text(r.x, r.y, r.text, fontsize=7, ha="center", va="center", zorder=5,
                       bbox=halo)  # fmt: skip
        box = text.get_window_extent(renderer).expanded(1.05, 1.2)
        if any(box.overlaps(other) for other in drawn):
            text.remove()
            continue
        drawn.append(box)
    return len(drawn)


def cluster_map(reduced: pd.DataFrame, names: dict[str, str], model: str, out: str,
                outlier_quantile: float = 0.95) -> int:  # fmt: skip
    """One model's map: clusters coloured, named where they lie, outliers ringed. Writes `out`
    as .png and .svg; returns how many names were drawn."""
    x, y = reduced["x"].to_numpy(), reduced["y"].to_numpy()
    cluster = reduced["cluster"].to_numpy()
    from matplotlib.colors import to_rgba

    k = np.maximum(cluster, 0)
    colours = plt.get_cmap("tab20")((2 * k) % 20 + (k // 10) % 2)  # neighbours' ids: far hues
    colours[cluster < 0] = to_rgba(NOISE_COLOUR)
    fig, ax = plt.subplots(figsize=(8, 7))
    _scatter(ax, x, y, colours, len(x))
    score = reduced["outlier"].to_numpy()
    out_mask = score > np.quantile(score, outlier_quantile) if len(score) else score > 0
    ax.scatter(x[out_mask], y[out_mask], s=_point_size(len(x)) * 4 + 6, facecolors="none",
               edgecolors="k", linewidths=0.5, rasterized=True,
               label=f"outliers (top {1 - outlier_quantile:.0%} outlier score)")  # fmt: skip
    drawn = _place_names(ax, map_labels(x, y, cluster, names))
    noise = float((cluster < 0).mean()) if len(cluster) else 0.0
    ax.set_title(f"{model}: {len(set(cluster[cluster >= 0]))} clusters, {noise:.0%} noise "
                 f"(grey), {len(x)} images", fontsize=10)  # fmt: skip
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    _save(fig, out)
    return drawn


def _category_colours(values: pd.Series) -> tuple[list, dict]:
    values = values.fillna("unknown").astype(str)
    top = [v for v in values.value_counts().index if v != "unknown"][:MAX_CATEGORIES]
    palette = plt.get_cmap("tab10")
    legend = {v: palette(i) for i, v in enumerate(top)}
    legend["other / unknown"] = NOISE_COLOUR
    return [legend.get(v, NOISE_COLOUR) for v in values], legend


def _finding_colours(values: pd.Series) -> tuple[list, dict]:
    states = values.astype("Int8").map(LABEL_STATES).astype("string").fillna("unknown")
    return [STATE_COLOURS[s] for s in states], dict(STATE_COLOURS)


def small_multiples(reduced: pd.DataFrame, manifest: pd.DataFrame, findings: tuple[str, ...],
                    attributes: tuple[str, ...], model: str, out: str) -> list[str]:  # fmt: skip
    """The map once per attribute (view, site, dataset, vendor, sex, age band: those with two
    values or more) and once per finding (positive / negative / uncertain / unknown). `manifest`
    rows line up with `reduced`. Returns the panel titles."""
    groups = subgroup_frame(manifest, attributes)
    order = [c for c in dict.fromkeys((*PANEL_ORDER, *attributes)) if c in groups]
    panels = [(c, *_category_colours(groups[c])) for c in order if groups[c].nunique() >= 2]
    panels += [(f, *_finding_colours(manifest[f])) for f in findings if f in manifest]
    cols = min(4, max(len(panels), 1))
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.9 * rows), squeeze=False)
    x, y = reduced["x"].to_numpy(), reduced["y"].to_numpy()
    for ax, (title, colours, legend) in zip(axes.flat, panels, strict=False):
        _scatter(ax, x, y, colours, len(x))
        ax.set_title(title, fontsize=9)
        handles = [plt.Line2D([], [], ls="", marker="o", ms=4, color=c) for c in legend.values()]
        ax.legend(
            handles,
            list(legend),
            fontsize=6,
            frameon=False,
            ncol=3,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
        )  # under the map, never over its points
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    if not panels:
        axes.flat[0].text(0.5, 0.5, "no attribute with two values and no finding",
                          ha="center", va="center")  # fmt: skip
    fig.suptitle(f"{model}: the same map coloured by each attribute and finding", fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    return [p[0] for p in panels]


def _save(fig, out: str) -> None:
    """`out` without suffix: the figure as <out>.png and <out>.svg."""
    from cxratlas.io import save_figure

    for suffix in (".png", ".svg"):
        # SVG text stays text (editable, searchable), not glyph outlines
        with plt.rc_context({"svg.fonttype": "none"}):
            save_figure(fig, out + suffix, dpi=130, bbox_inches="tight")
    plt.close(fig)
