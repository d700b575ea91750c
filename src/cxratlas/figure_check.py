"""Is a drawn figure readable? Measured on the figure itself, at draw time, with the renderer:

- `outside`: a text whose box leaves the saved page, or a note drawn inside a framed axes (a
  cluster name, a cell value) whose box leaves the frame;
- `overlap`: two drawn texts whose boxes overlap (rotated tick labels as rotated boxes);
- `legend`: a legend whose box covers plotted data: line vertices and segments, markers and
  scatter points, bars, errorbar lines, images, and notes inside the axes;
- `contrast`: a text whose colour against what lies behind it (heatmap cell, bar, legend frame,
  axes, page) is below the WCAG 2 AA contrast ratio;
- `clipped_ci`: an errorbar (a CI) that runs past the axes limits, so its end is not drawn.

Only what is drawn counts (tick labels outside the view, empty or hidden texts do not), and a
box must overlap or overhang by more than `CheckSettings.tolerance_pt`, so glyph boxes that
touch are not reported. Guides (axhline, axvline, grid lines) are not data.

`figures.save_figure` calls `record` on every figure it saves when `CHECKS_ENV` names a folder: one
JSON per figure file, which the tests read over a whole demo run.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from types import SimpleNamespace

import numpy as np

CHECKS_ENV = "CXR_ATLAS_FIGURE_CHECKS"  # a folder: save_figure writes each figure's check there


@dataclass(frozen=True)
class CheckSettings:
    """What counts as a problem. `tolerance_pt`: overlaps and overhangs up to this many points
    are glyph boxes touching, not text on text; the contrast ratios are WCAG 2 AA's (normal
    text, and large text: 18 pt, or 14 pt bold)."""

    tolerance_pt: float = 1.0
    min_contrast: float = 4.5
    min_contrast_large: float = 3.0


@dataclass(frozen=True)
class Problem:
    kind: str  # outside, overlap, legend, contrast, clipped_ci
    detail: str


@dataclass
class FigureCheck:
    """What was checked in one figure (counts of drawn texts, legends, errorbars) and the
    problems found."""

    texts: int = 0
    legends: int = 0
    errorbars: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Drawn:
    """One draw of a figure: the texts it drew, their boxes (display pixels) and names, its
    legends, and the tolerance in pixels."""

    fig: object
    renderer: object
    texts: list
    boxes: dict
    names: dict
    legends: list
    tol: float


def check_figure(fig, tight: bool = False, settings: CheckSettings | None = None) -> FigureCheck:
    """Draw `fig` and measure it. `tight`: it is saved with bbox_inches="tight", so the page
    grows to hold every text and only the axes frames can be left."""
    settings = settings or CheckSettings()
    renderer = fig.canvas.get_renderer()
    texts = _drawn_texts(fig, renderer)
    d = _Drawn(fig, renderer, texts, {id(t): t.get_window_extent(renderer) for t in texts},
               _names(fig, texts), _legends(fig), settings.tolerance_pt * fig.dpi / 72)  # fmt: skip
    bars, clipped = _clipped_errorbars(fig)
    problems = [*_outside(d, tight), *_overlaps(d), *_legends_over_data(d),
                *_low_contrast(d, settings), *clipped, *_empty_axes(d)]  # fmt: skip
    return FigureCheck(len(texts), len(d.legends), bars, problems)


def record(fig, path: str | os.PathLike, tight: bool, folder: str | os.PathLike) -> FigureCheck:
    """Check `fig` (about to be saved as `path`) and write the result to `folder`, one JSON
    file named after the figure's path."""
    check = check_figure(fig, tight=tight)
    name = str(Path(path)).replace(os.sep, "__").lstrip("_") + ".json"
    Path(folder).mkdir(parents=True, exist_ok=True)
    payload = {"figure": str(path), **asdict(check)}
    (Path(folder) / name).write_text(json.dumps(payload, indent=1) + "\n")
    return check


# -- what was drawn ------------------------------------------------------------------------------


def _drawn_texts(fig, renderer) -> list:
    """Every Text the figure draws (visible, non-empty, at a finite place), in drawing order:
    recorded by drawing it, so tick labels outside the view are not counted."""
    from matplotlib.text import Text

    seen: list = []
    original = Text.draw

    def recording(self, r):
        seen.append(self)
        return original(self, r)

    Text.draw = recording
    try:
        fig.draw(renderer)
    finally:
        Text.draw = original
    out, ids = [], set()
    for t in seen:
        box = t.get_window_extent(renderer) if t.get_visible() and t.get_text().strip() else None
        if box is not None and np.isfinite(box.bounds).all() and id(t) not in ids:
            out.append(t)
            ids.add(id(t))
    return out


def _legends(fig) -> list:
    axes_legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [lg for lg in [*axes_legends, *fig.legends] if lg.get_visible()]


def _corners(text, box, renderer) -> np.ndarray:
    """The four corners of a text's (possibly rotated) box, in display pixels: the window
    extent of a rotated text is the box around its rotated rectangle, which would make two
    neighbouring 45-degree tick labels overlap when their glyphs do not."""
    rotation = text.get_rotation()
    angle = rotation % 180  # a box turned 180 degrees is the same box
    x0, y0, x1, y1 = box.extents
    if angle == 0:
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    text.set_rotation(0)
    w, h = text.get_window_extent(renderer).size
    text.set_rotation(rotation)  # as it was: the figure is saved after the check
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + half @ np.array([[c, s], [-s, c]])


def _names(fig, texts) -> dict[int, str]:
    """Each drawn text as a message names it: its words, then what it is and where ("x tick
    label of axes 0 'clusters'")."""
    roles = {}
    for ax in fig.axes:
        where = _axes_name(ax)
        for axis, letter in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            roles |= {id(t): f"{letter} tick label of {where}"
                      for t in axis.get_ticklabels(which="both")}  # fmt: skip
            roles[id(axis.label)] = f"{letter} label of {where}"
        roles[id(ax.title)] = f"title of {where}"
        roles |= {id(t): f"note in {where}" for t in ax.texts}
    for lg in _legends(fig):
        roles |= {id(t): "legend entry" for t in [*lg.get_texts(), lg.get_title()]}
    out = {}
    for t in texts:
        words = " ".join(_plain(t.get_text()).split())
        words = words[:48] + ("..." if len(words) > 48 else "")
        out[id(t)] = f"{words!r} ({roles.get(id(t), 'figure text')})"
    return out


def _plain(text: str) -> str:
    """Tick labels' mathtext as a reader sees it: "$\\mathdefault{2\\times10^{1}}$" -> "2×10^1"."""
    for code, plain in (("\\mathdefault", ""), ("\\times", "×"), ("\\minus", "−"), ("$", ""),
                        ("{", ""), ("}", "")):  # fmt: skip
        text = text.replace(code, plain)
    return text


def _axes_name(ax) -> str:
    title = ax.get_title() or ax.get_ylabel() or ax.get_xlabel()
    index = ax.figure.axes.index(ax) if ax in ax.figure.axes else -1
    return f"axes {index}" + (f" {title[:40]!r}" if title else "")


# -- outside -------------------------------------------------------------------------------------


def _outside(d: _Drawn, tight: bool) -> list[Problem]:
    """Texts leaving the page (unless the page is tight around them), and notes placed inside a
    framed axes that leave its frame."""
    out = []
    notes = {id(t): ax for ax in d.fig.axes if ax.axison for t in ax.texts}
    for t in d.texts:
        box, name = d.boxes[id(t)], d.names[id(t)]
        if not tight and _overhang(box, d.fig.bbox) > d.tol:
            out.append(Problem("outside", f"{name} runs {_overhang(box, d.fig.bbox):.0f} px "
                               "outside the figure"))  # fmt: skip
        ax = notes.get(id(t))
        if ax is not None and _overhang(box, ax.bbox) > d.tol:
            out.append(Problem("outside", f"{name} runs {_overhang(box, ax.bbox):.0f} px "
                               "outside its axes frame"))  # fmt: skip
    return out


def _overhang(box, frame) -> float:
    """How far `box` reaches past `frame`, in pixels (0 when inside)."""
    return max(frame.x0 - box.x0, box.x1 - frame.x1, frame.y0 - box.y0, box.y1 - frame.y1, 0.0)


# -- overlap -------------------------------------------------------------------------------------


def _overlaps(d: _Drawn) -> list[Problem]:
    """Pairs of drawn texts whose boxes, each shrunk by the tolerance, still overlap."""
    out = []
    corners: dict[int, np.ndarray] = {}
    for a, b in combinations(d.texts, 2):
        ba, bb = d.boxes[id(a)], d.boxes[id(b)]
        if min(ba.x1, bb.x1) - max(ba.x0, bb.x0) <= 2 * d.tol:
            continue  # the boxes around them do not overlap: neither do the texts
        if min(ba.y1, bb.y1) - max(ba.y0, bb.y0) <= 2 * d.tol:
            continue
        ca = corners.setdefault(id(a), _corners(a, ba, d.renderer))
        cb = corners.setdefault(id(b), _corners(b, bb, d.renderer))
        if _rectangles_overlap(ca, cb, d.tol):
            out.append(Problem("overlap", f"{d.names[id(a)]} and {d.names[id(b)]} overlap"))
    return out


def _rectangles_overlap(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """Separating axes: two rectangles (4 corners each, in order), each shrunk by `tol` on
    every side, overlap when their projections overlap on every edge direction of either."""
    for poly in (a, b):
        for i in range(2):
            edge = poly[i + 1] - poly[i]
            axis = np.array([-edge[1], edge[0]]) / np.hypot(*edge)
            pa, pb = a @ axis, b @ axis
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= 2 * tol:
                return False
    return True


# -- legends over data ---------------------------------------------------------------------------


def _legends_over_data(d: _Drawn) -> list[Problem]:
    """Each legend (an axes' or the figure's) against the data of the axes it lies on."""
    from matplotlib.axes import Axes

    out = []
    for legend in d.legends:
        box = legend.get_window_extent(d.renderer).padded(-d.tol)
        axes = [legend.parent] if isinstance(legend.parent, Axes) else legend.parent.axes
        for ax in axes:
            region = _intersection(box, ax.bbox)
            hits = _data_in(ax, region, d.renderer) if region is not None else []
            if hits:
                labels = [t.get_text() for t in legend.get_texts()]
                out.append(Problem("legend", f"legend {labels[:4]} covers {', '.join(hits)} "
                                   f"in {_axes_name(ax)}"))  # fmt: skip
    return out


def _intersection(a, b):
    from matplotlib.transforms import Bbox

    x0, y0, x1, y1 = max(a.x0, b.x0), max(a.y0, b.y0), min(a.x1, b.x1), min(a.y1, b.y1)
    return Bbox([[x0, y0], [x1, y1]]) if x1 > x0 and y1 > y0 else None


def _is_guide(artist, ax) -> bool:
    """axhline / axvline / spans: drawn across the axes in axes coordinates on one side."""
    t = artist.get_transform()
    return t is ax.get_xaxis_transform() or t is ax.get_yaxis_transform() or t is ax.transAxes


def _data_in(ax, region, renderer) -> list[str]:
    """What plotted data of `ax` lies in `region` (display pixels), as short descriptions."""
    hits = []
    for line in ax.lines:
        if line.get_visible() and not _is_guide(line, ax) and _line_in(line, region):
            hits.append(f"line {line.get_label()!r}")
    for coll in ax.collections:
        if coll.get_visible() and not _is_guide(coll, ax) and _collection_in(coll, region):
            hits.append(f"{type(coll).__name__} {coll.get_label()!r}")
    patches = [p for p in ax.patches if p.get_visible() and not _is_guide(p, ax)]
    bars = sum(_intersection(p.get_window_extent(renderer), region) is not None for p in patches)
    hits += [f"{bars} bar(s)"] if bars else []
    hits += [f"image {im.get_label()!r}" for im in ax.images
             if _intersection(im.get_window_extent(renderer), region) is not None]  # fmt: skip
    hits += [f"text {t.get_text()[:30]!r}" for t in ax.texts if t.get_visible() and t.get_text()
             and _intersection(t.get_window_extent(renderer), region) is not None]  # fmt: skip
    return hits


def _points_in(xy: np.ndarray, region, radius: float) -> bool:
    xy = xy[np.isfinite(xy).all(axis=1)]
    inside = ((xy[:, 0] > region.x0 - radius) & (xy[:, 0] < region.x1 + radius)
              & (xy[:, 1] > region.y0 - radius) & (xy[:, 1] < region.y1 + radius))  # fmt: skip
    return bool(inside.any())


def _line_in(line, region) -> bool:
    xy = line.get_transform().transform(line.get_xydata())
    radius = line.get_markersize() * line.figure.dpi / 72 / 2
    if line.get_marker() not in (None, "", " ", "None") and _points_in(xy, region, radius):
        return True
    if line.get_linestyle() in ("", " ", "None") or len(xy) < 2:
        return False
    return line.get_transform().transform_path(line.get_path()).intersects_bbox(region, False)


def _collection_in(coll, region) -> bool:
    from matplotlib.collections import PathCollection

    if isinstance(coll, PathCollection):  # scatter: markers at the offsets
        xy = coll.get_offset_transform().transform(np.asarray(coll.get_offsets()))
        radius = float(np.sqrt(np.max(coll.get_sizes()))) * coll.figure.dpi / 72 / 2
        return _points_in(xy, region, radius)
    transform = coll.get_transform()
    filled = len(coll.get_facecolor()) > 0 and float(np.max(coll.get_facecolor()[:, 3])) > 0
    return any(transform.transform_path(p).intersects_bbox(region, filled)
               for p in coll.get_paths())  # fmt: skip


# -- contrast ------------------------------------------------------------------------------------


def _luminance(rgb) -> float:
    c = np.asarray(rgb[:3], float)
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(c @ [0.2126, 0.7152, 0.0722])


def contrast_ratio(fg, bg) -> float:
    """WCAG 2 contrast ratio of two colours (1 to 21)."""
    from matplotlib.colors import to_rgb

    hi, lo = sorted((_luminance(to_rgb(fg)), _luminance(to_rgb(bg))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _over(rgba, below) -> np.ndarray:
    """`rgba` composited over the opaque colour `below`."""
    from matplotlib.colors import to_rgba

    r = np.asarray(to_rgba(rgba), float)
    return r[:3] * r[3] + np.asarray(below[:3], float) * (1 - r[3])


def _low_contrast(d: _Drawn, settings: CheckSettings) -> list[Problem]:
    """Texts whose colour against what lies behind their centre is below the WCAG ratio."""
    from matplotlib.colors import to_rgba

    in_legend = {id(t): lg for lg in d.legends for t in [*lg.get_texts(), lg.get_title()]}
    out = []
    for t in d.texts:
        (x0, y0), (x1, y1) = d.boxes[id(t)].get_points()
        x, y = (x0 + x1) / 2, (y0 + y1) / 2
        bg = _behind(d.fig, t, x, y, in_legend.get(id(t)))
        ratio = contrast_ratio(_over(to_rgba(t.get_color(), t.get_alpha()), bg), bg)
        large = t.get_fontsize() >= 18 or (t.get_fontsize() >= 14 and _bold(t))
        need = settings.min_contrast_large if large else settings.min_contrast
        if ratio < need:
            out.append(Problem("contrast", f"{d.names[id(t)]}: contrast {ratio:.1f}:1 against "
                               f"what lies behind it, below {need}:1"))  # fmt: skip
    return out


def _bold(text) -> bool:
    weight = text.get_fontweight()
    return weight in ("bold", "heavy", "black", "extra bold", "semibold", "demibold") or (
        isinstance(weight, int | float) and weight >= 600
    )


def _behind(fig, text, x: float, y: float, legend) -> np.ndarray:
    """The opaque colour behind point (x, y) of `text`: its own box, its legend's frame, then
    what the axes under it draws there (image cell, bar, axes face), then the page."""
    from matplotlib.colors import to_rgba

    below = _axes_colour(fig, x, y, text)
    if legend is not None and legend.get_frame_on():
        below = _over(legend.get_frame().get_facecolor(), below)
    patch = text.get_bbox_patch()
    if patch is not None and patch.get_visible() and patch.get_fill():
        below = _over(to_rgba(patch.get_facecolor()), below)
    return below


def _axes_colour(fig, x: float, y: float, text) -> np.ndarray:
    from matplotlib.colors import to_rgba

    page = _over(to_rgba(fig.get_facecolor()), (1.0, 1.0, 1.0))
    axes = [a for a in fig.axes if a.bbox.contains(x, y) and a.get_visible()]
    if text.axes in axes:
        axes = [text.axes]  # its own axes first (an inset or colorbar may overlap)
    if not axes:
        return page
    ax = max(axes, key=lambda a: a.get_zorder())
    colour = _over(to_rgba(ax.patch.get_facecolor()), page) if ax.patch.get_visible() else page
    layers = [a for a in (*ax.images, *ax.patches) if a.get_visible()]
    for artist in sorted(layers, key=lambda a: a.get_zorder()):
        if artist.get_zorder() >= text.get_zorder() and text.axes is ax:
            continue  # drawn over the text, not behind it
        colour = _layer_colour(artist, x, y, colour)
    return colour


def _layer_colour(artist, x: float, y: float, below) -> np.ndarray:
    from matplotlib.image import AxesImage

    if isinstance(artist, AxesImage):
        value = artist.get_cursor_data(SimpleNamespace(x=x, y=y))
        if value is None or np.ma.is_masked(value) or not np.all(np.isfinite(value)):
            return below
        return _over(artist.to_rgba(value, alpha=artist.get_alpha()), below)
    if artist.get_fill() and artist.contains_point((x, y)):
        return _over(artist.get_facecolor(), below)
    return below


# -- empty axes ----------------------------------------------------------------------------------


def _empty_axes(d: _Drawn) -> list[Problem]:
    """A framed axes that draws no data (bars all of zero length, no point, no line, no image,
    no note): a sentence saying why says more than empty axes."""
    out = []
    for ax in d.fig.axes:
        if ax.axison and ax.get_visible() and not _has_data(ax, d.renderer):
            out.append(Problem("empty", f"{_axes_name(ax)} draws no data: say why in a sentence"))
    return out


def _has_data(ax, renderer) -> bool:
    lines = [a for a in ax.lines if a.get_visible() and not _is_guide(a, ax)]
    if any(len(line.get_xydata()) for line in lines) or ax.images:
        return True
    if any(c.get_visible() and _collection_size(c) for c in ax.collections):
        return True
    areas = [p.get_window_extent(renderer) for p in ax.patches if p.get_visible()]
    if any(b.width >= 1 and b.height >= 1 for b in areas):
        return True
    return any(t.get_visible() and t.get_text().strip() for t in ax.texts)


def _collection_size(coll) -> int:
    from matplotlib.collections import PathCollection

    return len(coll.get_offsets()) if isinstance(coll, PathCollection) else len(coll.get_paths())


# -- errorbars -----------------------------------------------------------------------------------


def _clipped_errorbars(fig) -> tuple[int, list[Problem]]:
    """(errorbar segments drawn, problems): a segment with an end past the axes limits."""
    from matplotlib.container import ErrorbarContainer

    count, out = 0, []
    for ax in fig.axes:
        xlim, ylim = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        for container in ax.containers:
            if not isinstance(container, ErrorbarContainer):
                continue
            for coll in container.lines[2]:
                for seg in coll.get_segments():
                    seg = np.asarray(seg, float)
                    seg = seg[np.isfinite(seg).all(axis=1)]
                    count += len(seg) > 0
                    cut = _cut_by(seg, xlim, ylim)
                    if cut:
                        out.append(Problem("clipped_ci", f"errorbar {container.get_label()!r} "
                                           f"in {_axes_name(ax)} {cut}"))  # fmt: skip
    return count, out


def _cut_by(seg: np.ndarray, xlim, ylim) -> str:
    if not len(seg):
        return ""
    for dim, (lo, hi), axis in ((0, xlim, "x"), (1, ylim, "y")):
        eps = 1e-9 * (hi - lo)
        if seg[:, dim].min() < lo - eps or seg[:, dim].max() > hi + eps:
            return (f"spans {axis} {seg[:, dim].min():.3g}..{seg[:, dim].max():.3g}, past the "
                    f"{axis} limits {lo:.3g}..{hi:.3g}")  # fmt: skip
    return ""
