"""The figure checker on planted figures: each defect (text off the page or past its frame, texts
on texts, a legend over data, white on yellow, a CI cut by the axis, empty axes) is found and
named, and figures without it pass, including near misses a careless checker would flag."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import IdentityTransform  # noqa: E402

from cxratlas.figure_check import CHECKS_ENV, check_figure, contrast_ratio  # noqa: E402
from cxratlas.figures import save_figure  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def problems(fig, kind: str | None = None, **kw) -> list[str]:
    found = check_figure(fig, **kw).problems
    return [p.detail for p in found if kind is None or p.kind == kind]


def test_a_clean_figure_with_every_kind_of_artist_passes():
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(9, 3.5))
    x = np.arange(5)
    ax.errorbar(x, 0.6 + 0.05 * x, yerr=0.05, fmt="o", capsize=3, label="model a")
    ax.plot(x, 0.5 + 0.02 * x, "s-", label="model b")
    ax.axhline(0.5, color="grey", ls="--")  # a guide, not data: the legend may cross it
    ax.set_ylim(0, 1.2)
    ax.set_xticks(x, [f"finding {i}" for i in x], rotation=30, ha="right")
    ax.set_ylabel("AUROC")
    ax.set_title("probes")
    ax.legend(loc="upper left", fontsize=8)  # the data sit low, the corner is empty
    M = np.array([[1.0, 0.2], [0.2, 1.0]])
    hm.imshow(M, vmin=0, vmax=1, cmap="viridis")
    for (i, j), v in np.ndenumerate(M):  # black on yellow, white on purple
        hm.text(j, i, f"{v:.2f}", ha="center", va="center", color="k" if v > 0.5 else "w")
    fig.suptitle("a clean figure")
    fig.tight_layout()
    check = check_figure(fig)
    assert check.problems == []
    assert check.texts >= 15 and check.legends == 1 and check.errorbars == 5


def test_a_text_off_the_page_is_flagged_unless_the_page_grows_to_hold_it():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    note = fig.text(0.8, 0.5, "a note far too long to fit on this page")
    past = note.get_window_extent(fig.canvas.get_renderer()).x1 - fig.bbox.x1
    assert past > 100
    assert problems(fig, "outside") == [
        f"'a note far too long to fit on this page' (figure text) runs {past:.0f} px outside "
        "the figure"
    ]
    assert problems(fig, tight=True) == []  # bbox_inches="tight" widens the page


def test_a_note_past_its_axes_frame_is_flagged_even_on_a_tight_page():
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter([0, 10], [0, 10])
    ax.text(10, 5, "c4 · PA · manufacturer Siemens 100%", ha="center")  # at the right edge
    ax.text(2, 5, "c0 · LATERAL", ha="center")  # well inside: fine
    found = problems(fig, tight=True)
    assert len(found) == 1 and "'c4 · PA · manufacturer Siemens 100%' (note in axes 0)" in found[0]
    assert "outside its axes frame" in found[0]


def test_log_axis_tick_labels_on_top_of_each_other_are_flagged_by_name():
    """The stability figure's axes: min_cluster_size 2..40 on a log axis, 3.7 inches wide."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax in axes:
        ax.plot([2, 3, 4, 6, 8, 10, 15, 20, 30, 40], np.linspace(30, 4, 10), "o-")
        ax.set_xscale("log")
    fig.tight_layout()
    found = problems(fig, "overlap")
    pair = "'2×10^0' (x tick label of axes 0) and '3×10^0' (x tick label of axes 0) overlap"
    assert pair in found
    assert len(found) >= 6  # the same in every panel


def test_texts_that_touch_by_half_a_point_pass_and_texts_that_overlap_do_not():
    for by, found in ((0.5, []), (8, ["'left' (figure text) and 'right' (figure text) overlap"])):
        fig = plt.figure(figsize=(4, 2))
        a = fig.text(50, 60, "left", transform=IdentityTransform())
        box = a.get_window_extent(fig.canvas.get_renderer())
        fig.text(box.x1 - by, 60, "right", transform=IdentityTransform())  # by pixels into it
        assert problems(fig) == found


def _rotated_ticks(n: int):
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(range(n), np.arange(n) + 1)
    ax.set_xticks(range(n), [f"manufacturer value {i}" for i in range(n)], rotation=45,
                  ha="right")  # fmt: skip
    fig.tight_layout()
    return fig, ax


def test_rotated_tick_labels_are_measured_as_rotated_boxes():
    fig, ax = _rotated_ticks(6)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    a, b = (t.get_window_extent(renderer) for t in ax.get_xticklabels()[:2])
    assert a.overlaps(b)  # the boxes around two neighbours overlap, their glyphs do not
    assert problems(fig) == []
    crowded, _ = _rotated_ticks(40)  # 40 labels in 4 inches: they do
    assert len(problems(crowded, "overlap")) >= 30


def test_a_legend_over_points_bars_or_a_note_is_flagged_and_one_beside_them_is_not():
    rng = np.random.default_rng(0)
    fig, (pts, bars, notes) = plt.subplots(1, 3, figsize=(12, 3.5))
    pts.scatter(*rng.random((2, 400)), label="images")
    pts.legend(loc="upper right")
    for k, colour in (("positive", "C0"), ("negative", "C1")):
        bars.barh(range(5), [300] * 5, left=0 if k == "positive" else 300, color=colour, label=k)
    bars.legend(loc="lower right")
    notes.scatter([0.8, 0.9], [0.8, 0.9], label="pooled")
    notes.set(xlim=(0, 1), ylim=(0, 1))
    notes.text(0.05, 0.05, "skipped: 3 of 30 positive")
    notes.legend(loc="lower left")
    found = problems(fig, "legend")
    assert len(found) == 3
    assert "covers PathCollection 'images'" in found[0] and "axes 0" in found[0]
    assert "bar(s) in axes 1" in found[1]
    assert "covers text 'skipped: 3 of 30 positive'" in found[2]
    clean, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(*rng.random((2, 400)), label="images")
    ax.axhline(0.5, label="chance")  # a guide under a legend is not data
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))  # beside the axes
    clean.tight_layout()
    assert problems(clean, "legend") == []


def test_white_numbers_on_yellow_cells_are_flagged_and_black_ones_pass():
    assert contrast_ratio("white", "black") == pytest.approx(21)
    assert contrast_ratio("white", "#767676") == pytest.approx(4.54, abs=0.01)  # WCAG's grey
    fig, ax = plt.subplots(figsize=(3, 3), layout="tight")
    ax.imshow([[1.0, 0.0]], vmin=0, vmax=1, cmap="viridis")
    ax.text(0, 0, "1.00", color="w", ha="center", va="center")  # white on yellow
    ax.text(1, 0, "0.00", color="w", ha="center", va="center")  # white on dark purple: fine
    found = problems(fig)
    assert len(found) == 1 and found[0].startswith("'1.00' (note in axes 0): contrast 1.")
    ax.texts[0].set_color("k")
    assert problems(fig) == []


def test_grey_text_on_a_dark_bar_is_flagged():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0], [10], color="#202060")
    ax.text(0, 5, "n=10", color="black", ha="center")
    assert len(problems(fig, "contrast")) == 1
    ax.texts[0].set_color("white")
    assert problems(fig) == []


def test_a_ci_cut_by_the_axis_limits_is_flagged():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.errorbar([0, 1], [0.72, 0.4], yerr=[[0.05, 0.15], [0.05, 0.1]], fmt="o", label="m")
    ax.set_ylim(0.3, 1.0)  # the second CI runs down to 0.25
    found = problems(fig)
    assert found == ["errorbar 'm' in axes 0 spans y 0.25..0.5, past the y limits 0.3..1"]
    ax.set_ylim(0.2, 1.0)
    assert problems(fig) == []


def test_empty_axes_are_flagged_and_a_sentence_is_not():
    fig, ax = plt.subplots(figsize=(4, 2), layout="tight")
    ax.barh([0, 1], [0, 0])  # nothing was skipped: bars of length 0
    assert problems(fig) == ["axes 0 draws no data: say why in a sentence"]
    ax.set_axis_off()
    ax.text(0.5, 0.5, "every image was read", ha="center", transform=ax.transAxes)
    assert problems(fig) == []


def test_save_figure_records_the_check_where_the_environment_says(tmp_path, monkeypatch):
    fig, ax = plt.subplots(figsize=(3, 2), layout="tight")
    ax.plot([0, 1], [0, 1])
    fig.text(0.9, 0.5, "off the page")
    save_figure(fig, tmp_path / "plain.png")
    monkeypatch.setenv(CHECKS_ENV, str(tmp_path / "checks"))
    assert not (tmp_path / "checks").exists()  # not asked: nothing recorded
    save_figure(fig, tmp_path / "out" / "fig.png")
    (record,) = (tmp_path / "checks").glob("*.json")
    data = json.loads(record.read_text())
    assert data["figure"] == str(tmp_path / "out" / "fig.png")
    assert [p["kind"] for p in data["problems"]] == ["outside"] and data["texts"] == 11


# -- the project's figures, drawn on hard cases ------------------------------------------------


def drawn(tmp_path, monkeypatch) -> dict[str, dict]:
    """The checks save_figure recorded under tmp_path/checks: {figure file name: check}."""
    out = {}
    for path in (tmp_path / "checks").glob("*.json"):
        data = json.loads(path.read_text())
        out[data["figure"].rsplit("/", 1)[-1]] = data
    return out


@pytest.fixture
def checks(tmp_path, monkeypatch):
    monkeypatch.setenv(CHECKS_ENV, str(tmp_path / "checks"))
    return lambda: drawn(tmp_path, monkeypatch)


def test_the_probe_figure_holds_a_ci_that_reaches_below_0_3(tmp_path, checks):
    from cxratlas.analysis.plots import probe_plot

    rows = [("effusion", "a", 0.52, 0.21, 0.8), ("effusion", "b", 0.9, 0.8, 1.0),
            ("nodule", "a", 0.7, 0.6, 0.8), ("nodule", "b", 0.97, 0.94, 1.0)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["finding", "model", "auroc", "ci_low", "ci_high"])
    table["status"] = "scored"
    probe_plot(table, str(tmp_path / "probes.png"))
    check = checks()["probes.png"]
    assert check["errorbars"] == 4 and check["problems"] == []


def test_the_stability_figure_labels_close_sizes_without_overlap(tmp_path, checks):
    from cxratlas.analysis.cluster_stability import stability_plot, sweep_sizes

    sizes = sweep_sizes(10_000, 1_000_000)  # five-digit sizes 0.125 decades apart
    n = len(sizes)
    table = pd.DataFrame({"min_cluster_size": sizes, "configured": [s == 10_000 for s in sizes],
                          "clusters": np.arange(n, 0, -1), "noise_share": np.linspace(0, 1, n),
                          "ari_with_previous": [np.nan, *np.linspace(0.5, 1, n - 1)]})  # fmt: skip
    stability_plot(table, "m: a plateau at min_cluster_size 10000", str(tmp_path / "s.png"))
    assert checks()["s.png"]["problems"] == []


def test_the_cluster_map_writes_ids_beside_clusters_and_names_in_a_key(tmp_path, checks):
    from cxratlas.analysis.maps import cluster_map

    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [8, 0], [0, 8], [8, 8], [4, 4], [16, 0]])  # one at the edge
    xy = np.vstack([c + rng.normal(scale=0.8, size=(50, 2)) for c in centres])
    cluster = np.repeat(np.arange(6), 50)
    reduced = pd.DataFrame({"image_id": [f"i{i}" for i in range(300)], "x": xy[:, 0],
                            "y": xy[:, 1], "cluster": cluster,
                            "outlier": rng.random(300)})  # fmt: skip
    names = {f"c{k}": f"c{k} · PA · manufacturer Vendor{k} 100% · effusion ×3.1" for k in range(6)}
    assert cluster_map(reduced, names, "m", str(tmp_path / "clusters")) == 6
    found = checks()
    assert found["clusters.png"]["problems"] == [] and found["clusters.svg"]["problems"] == []
    svg = (tmp_path / "clusters.svg").read_text()
    assert all(name in svg for name in names.values())  # every full name, in the key


def test_nothing_skipped_is_a_sentence_not_empty_axes(tmp_path, checks):
    from cxratlas.analysis.quality import quality_plot

    table = pd.DataFrame(columns=["stage", "model", "shard", "image_id", "reason",
                                  "reason_class"])  # fmt: skip
    summary = pd.DataFrame({"stage": ["ingest", "embed"], "model": ["", "m"],
                            "images": [None, 300], "skipped": [0, 0],
                            "reasons": ["", ""]})  # fmt: skip
    quality_plot(table, summary, str(tmp_path / "skipped.png"))
    check = checks()["skipped.png"]
    assert check["problems"] == [] and check["texts"] == 1  # one sentence, no axes


def test_the_confounding_figure_keeps_its_notes_clear_of_the_legend(tmp_path, checks):
    from cxratlas.analysis.shortcut_plots import confounding_plot

    rows = [("effusion", "a", 0.9, 0.88, 0.55, False, "scored", 40, 100),
            ("pneumonia", "a", 0.7, 0.2, 0.82, True, "scored", 30, 100),  # within-site 0.2
            ("no_finding", "a", np.nan, np.nan, np.nan, False, "skipped", 115, 115)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["finding", "model", "pooled_auroc", "within_site_auroc",
                                        "metadata_auroc", "flagged", "status", "positives",
                                        "n"])  # fmt: skip
    table["site"] = "manufacturer"
    confounding_plot(table, str(tmp_path / "c.png"))
    assert checks()["c.png"]["problems"] == []


def test_heatmap_numbers_read_on_every_cell(tmp_path, checks):
    from cxratlas.analysis.plots import agreement_heatmaps
    from cxratlas.analysis.shortcut_plots import gap_heatmap

    models = ["a", "b", "c", "d"]
    pairs = pd.DataFrame([(a, b, v, v, v) for (a, b), v in
                          zip([("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"),
                               ("c", "d")], np.linspace(0.05, 0.95, 6), strict=True)],
                         columns=["model_a", "model_b", "jaccard_k", "cka", "ari"])  # fmt: skip
    agreement_heatmaps(pairs, models, str(tmp_path / "agreement.png"))
    gaps = pd.DataFrame({"finding": "f", "model": np.repeat(models, 3),
                         "attribute": ["sex", "site", "view"] * 4,
                         "gap": np.linspace(0, 0.3, 12),
                         "separated": [True, False] * 6})  # fmt: skip
    gap_heatmap(gaps, str(tmp_path / "gaps.png"))
    found = checks()
    assert found["agreement.png"]["texts"] >= 3 * 16 and found["agreement.png"]["problems"] == []
    assert found["gaps.png"]["problems"] == []


def test_the_dataset_figure_keeps_its_legend_off_the_bars(tmp_path, checks):
    from cxratlas.analysis.datasets import dataset_plot

    # clusters of one size: every bar runs to the right edge, where a legend inside would sit
    clusters = pd.DataFrame({"model": "m", "cluster": np.repeat([f"c{k}" for k in range(6)], 2),
                             "dataset": ["site_a", "site_b"] * 6, "n": 25})  # fmt: skip
    mixing = pd.DataFrame({"model": ["m"], "dataset": ["all"], "separation": [0.1]})
    dataset_plot(clusters, mixing, str(tmp_path / "datasets.png"))
    assert checks()["datasets.png"]["problems"] == []


def test_checking_a_figure_leaves_it_as_drawn():
    """save_figure checks before it saves: the check must not move or turn anything."""
    fig, ax = plt.subplots(figsize=(4, 3), layout="tight")
    ax.bar(range(3), [1, 2, 3])
    ax.set_xticks(range(3), ["a", "b", "c"], rotation=270)
    ax.set_ylabel("count", rotation=270)
    fig.canvas.draw()  # a draw places the title: compare drawn with drawn

    def texts():
        return [(t.get_text(), t.get_rotation(), *np.round(t.get_position(), 6))
                for t in fig.findobj(Text)]  # fmt: skip

    before = texts()
    check_figure(fig)
    assert texts() == before


def test_the_largest_gap_is_the_darkest_cell_and_an_unscored_cell_is_grey(tmp_path, monkeypatch):
    """Gaps past 0.3 (0.35 here) are within the scale, at its dark end, not past it in the pale
    colour a blank cell has; a cell with no number is grey, unlike any colour of the scale."""
    import matplotlib.colors as mcolors

    import cxratlas.analysis.shortcut_plots as sp

    drawn = {}
    monkeypatch.setattr(sp, "save_figure", lambda fig, path, **kw: drawn.update(
        im=fig.axes[0].images[0]))  # fmt: skip
    gaps = pd.DataFrame({"finding": "f", "model": ["a", "a", "b", "b"],
                         "attribute": ["sex", "site", "sex", "site"],
                         "gap": [0.05, 0.35, 0.32, np.nan], "separated": False})  # fmt: skip
    sp.gap_heatmap(gaps.dropna(), str(tmp_path / "gaps.png"))
    im = drawn["im"]
    assert im.get_clim()[1] >= 0.35
    lum = [np.dot(im.to_rgba(v)[:3], [0.2126, 0.7152, 0.0722]) for v in (0.05, 0.35)]
    assert lum[1] < 0.3 < lum[0]  # the largest gap is dark, the smallest light
    assert mcolors.to_hex(im.cmap.get_bad()) == sp.NOT_SCORED
