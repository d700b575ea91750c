"""Maps as pictures: each model's map with its clusters coloured, their ids written beside them
and their full names in a key beside the map (names run to 60 characters: written on the map
they covered points and ran out of the frame), its outliers ringed, and small multiples of the
same map coloured by view, site or dataset and by each finding.

Drawn with matplotlib (datamapplot 0.7 would add datashader, dask, numba and scikit-image to
every environment and asks fonts.googleapis.com for its fonts, which a cluster node cannot
reach). Points are rasterised inside the SVG, so a million-point map stays a small file while
names and axes stay text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxratlas.analysis.plots import plt
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


def _label_spots(members: np.ndarray, pad: float):
    """Where a cluster's id may go, in display pixels: above, below, right of and left of the
    box of all its members, then of the half nearest its medoid (a cluster in several pieces
    gets spots by its main piece, not only around the empty middle of its box), each with the
    text alignment that keeps it off the points."""
    medoid = members[np.argmin(((members - np.median(members, axis=0)) ** 2).sum(axis=1))]
    near = np.linalg.norm(members - medoid, axis=1)
    spots = []
    for part in (members, members[near <= np.median(near)]):
        (x0, y0), (x1, y1) = part.min(axis=0), part.max(axis=0)
        cx, cy = np.median(part, axis=0)
        spots += [((cx, y1 + pad), "center", "bottom"), ((cx, y0 - pad), "center", "top"),
                  ((x1 + pad, cy), "left", "center"),
                  ((x0 - pad, cy), "right", "center")]  # fmt: skip
    return spots


def _gap(box, pts: np.ndarray) -> float:
    """Pixels from `box` to the nearest of `pts` (0 inside; inf for none)."""
    if not len(pts):
        return float("inf")
    dx = np.maximum(np.maximum(box.x0 - pts[:, 0], pts[:, 0] - box.x1), 0)
    dy = np.maximum(np.maximum(box.y0 - pts[:, 1], pts[:, 1] - box.y1), 0)
    return float(np.hypot(dx, dy).min())


def _spot_cost(box, points: np.ndarray, own: np.ndarray) -> tuple[int, bool, float]:
    """(points the box covers, whether another cluster lies nearer than its own, its gap to
    its own cluster): fewest points covered first, then a spot no reader could give to the
    neighbouring cluster, then the closest."""
    inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1)
              & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))  # fmt: skip
    gap = _gap(box, points[own])
    return int(inside.sum()), _gap(box, points[~own]) < gap, gap


def _place_ids(ax, x, y, cluster, max_labels: int = 60) -> int:
    """Write each cluster's id ("c3") beside it, not on it: of the spots around the cluster,
    the one inside the frame, clear of the ids drawn before (largest clusters first), that
    covers the fewest points and then lies closest to the cluster. A cluster with no such
    spot goes unlabelled on the map (its colour and full name are in the key). Returns how
    many ids were drawn."""
    fig = ax.figure
    fig.canvas.draw()  # the aspect and limits are final only once drawn
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(np.column_stack([x, y]))
    to_data = ax.transData.inverted()
    # clear of the largest marker drawn (an outlier's ring), plus 2 points
    radius = np.sqrt(_point_size(len(x)) * 4 + 6) / 2 * fig.dpi / 72
    pad = radius + 2 * fig.dpi / 72
    drawn: list = []
    step = max(1, len(points) // 200_000)  # a million-point map is scored on a fifth
    points, cluster = points[::step], np.asarray(cluster)[::step]
    ids, sizes = np.unique(cluster[cluster >= 0], return_counts=True)
    for k in ids[np.argsort(-sizes, kind="stable")][:max_labels]:
        own, best = cluster == k, None
        for (px, py), ha, va in _label_spots(points[own], pad):
            text = ax.text(*to_data.transform((px, py)), f"c{k}", fontsize=8, ha=ha, va=va,
                           zorder=5, fontweight="bold")  # fmt: skip
            box = text.get_window_extent(renderer).expanded(1.1, 1.1)
            fits = ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1)
            cost = _spot_cost(box.padded(radius), points, own)
            if fits and not any(box.overlaps(o) for o in drawn) and (best is None
                                                                    or cost < best[0]):  # fmt: skip
                if best is not None:
                    best[1].remove()
                best = (cost, text, box)
            else:
                text.remove()
        if best is not None:
            drawn.append(best[2])
    return len(drawn)


def _cluster_key(ax, colours: dict[int, tuple], names: dict[str, str], noise: bool,
                 ring_label: str):  # fmt: skip
    """The key beside the map: every cluster's colour and full name (the map carries only
    the short ids, so long names never run over points or out of the frame), then noise and
    the outlier ring."""
    dot = {"ls": "", "marker": "o", "ms": 5}
    handles = [plt.Line2D([], [], color=c, **dot) for c in colours.values()]
    labels = [names.get(f"c{k}", f"c{k}") for k in colours]
    if noise:
        handles.append(plt.Line2D([], [], color=NOISE_COLOUR, **dot))
        labels.append("noise")
    handles.append(plt.Line2D([], [], ls="", marker="o", ms=7, mfc="none", mec="k", mew=0.6))
    labels.append(ring_label)
    ncol = 1 + len(labels) // 40
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0,
              frameon=False, fontsize=7, ncol=ncol, title="clusters", alignment="left")  # fmt: skip


def cluster_map(reduced: pd.DataFrame, names: dict[str, str], model: str, out: str,
                outlier_quantile: float = 0.95) -> int:  # fmt: skip
    """One model's map: clusters coloured, their ids written beside them, their full names in
    the key beside the map, outliers ringed. Writes `out` as .png and .svg; returns how many
    ids were drawn on the map."""
    from matplotlib.colors import to_rgba

    x, y = reduced["x"].to_numpy(), reduced["y"].to_numpy()
    cluster = reduced["cluster"].to_numpy()
    k = np.maximum(cluster, 0)
    colours = plt.get_cmap("tab20")((2 * k) % 20 + (k // 10) % 2)  # neighbours' ids: far hues
    colours[cluster < 0] = to_rgba(NOISE_COLOUR)
    fig, ax = plt.subplots(figsize=(8, 7))
    _scatter(ax, x, y, colours, len(x))
    score = reduced["outlier"].to_numpy()
    out_mask = score > np.quantile(score, outlier_quantile) if len(score) else score > 0
    ax.scatter(x[out_mask], y[out_mask], s=_point_size(len(x)) * 4 + 6, facecolors="none",
               edgecolors="k", linewidths=0.5, rasterized=True)  # fmt: skip
    ids = sorted(set(cluster[cluster >= 0].tolist()))
    first = {c: int(np.flatnonzero(cluster == c)[0]) for c in ids}
    _cluster_key(ax, {c: tuple(colours[first[c]]) for c in ids}, names, bool((cluster < 0).any()),
                 f"outliers (top {1 - outlier_quantile:.0%} outlier score)")  # fmt: skip
    noise = float((cluster < 0).mean()) if len(cluster) else 0.0
    ax.set_title(f"{model}: {len(ids)} clusters, {noise:.0%} noise (grey), {len(x)} images",
                 fontsize=10)  # fmt: skip
    drawn = _place_ids(ax, x, y, cluster)
    _save(fig, out, model)
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
    # tight_layout leaves the title out: keep half an inch above the panels whatever the height
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    _save(fig, out, model)
    return [p[0] for p in panels]


def _save(fig, out: str, model: str) -> None:
    """`out` without suffix: the figure as <out>.png (naming its model) and <out>.svg."""
    from cxratlas.figures import save_figure
    from cxratlas.io import png_metadata

    for suffix in (".png", ".svg"):
        meta = png_metadata(model) if suffix == ".png" else None
        # SVG text stays text (editable, searchable), not glyph outlines
        with plt.rc_context({"svg.fonttype": "none"}):
            save_figure(fig, out + suffix, dpi=130, bbox_inches="tight", metadata=meta)
    plt.close(fig)
