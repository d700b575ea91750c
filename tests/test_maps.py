"""Maps as pictures: planted clusters are coloured, named where they lie and written as PNG and
SVG; small multiples get one panel per attribute with two values and per finding."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from cxratlas.analysis.maps import cluster_map, small_multiples
from cxratlas.io import ManifestColumns


def _map(n_per=60, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [20, 0], [0, 20]])
    xy = np.vstack([c + rng.normal(size=(n_per, 2)) for c in centres])
    cluster = np.repeat([0, 1, 2], n_per)
    cluster[:3] = -1
    outlier = rng.random(len(cluster))
    ids = [f"i{i}" for i in range(len(cluster))]
    return pd.DataFrame({"image_id": ids, "x": xy[:, 0], "y": xy[:, 1], "cluster": cluster,
                         "outlier": outlier})  # fmt: skip


def test_a_cluster_map_names_every_planted_cluster_in_png_and_svg(tmp_path):
    reduced = _map()
    names = {"c0": "c0 · LATERAL", "c1": "c1 · site B 90%", "c2": "c2 · effusion ×3.0"}
    drawn = cluster_map(reduced, names, "m", str(tmp_path / "clusters"))
    assert drawn == 3  # three well-separated clusters: no name hides another
    assert Image.open(tmp_path / "clusters.png").size[0] > 500
    svg = (tmp_path / "clusters.svg").read_text()
    for name in names.values():
        assert name in svg  # names stay text in the SVG
    assert "<image" in svg  # the points are rasterised inside it


def test_small_multiples_have_a_panel_per_attribute_and_finding(tmp_path):
    reduced = _map()
    n = len(reduced)
    manifest = pd.DataFrame({"view_position": np.repeat(["PA", "LATERAL", "AP"], n // 3),
                             "site": ["A"] * n, "sex": np.tile(["F", "M"], n // 2),
                             "effusion": pd.array(np.tile([1, 0, -1], n // 3), "Int8")},
                            )  # fmt: skip
    columns = ManifestColumns(findings=("effusion",), attributes=("site",))
    titles = small_multiples(reduced, manifest, columns.findings, columns.attributes, "m",
                             str(tmp_path / "multiples"))  # fmt: skip
    assert titles == ["view_position", "sex", "effusion"]  # one-valued site: no panel
    assert (tmp_path / "multiples.svg").stat().st_size > 1000


def test_cluster_ids_sit_beside_their_clusters_covering_no_point():
    """Every id is drawn next to its cluster (within 30 px of a member) and over no point."""
    from cxratlas.analysis.maps import _place_ids, _scatter
    from cxratlas.analysis.plots import plt

    reduced = _map()
    x, y, cluster = (reduced[c].to_numpy() for c in ("x", "y", "cluster"))
    fig, ax = plt.subplots(figsize=(6, 5))
    _scatter(ax, x, y, "k", len(x))
    assert _place_ids(ax, x, y, cluster) == 3
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(np.column_stack([x, y]))
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1)
                  & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))  # fmt: skip
        assert not inside.any(), text.get_text()
        own = points[cluster == int(text.get_text()[1:])]
        gap = np.hypot(np.clip(own[:, 0], box.x0, box.x1) - own[:, 0],
                       np.clip(own[:, 1], box.y0, box.y1) - own[:, 1]).min()  # fmt: skip
        assert gap < 30, (text.get_text(), gap)
    plt.close(fig)


def test_a_crowded_map_labels_what_fits_and_passes_the_figure_check(tmp_path, monkeypatch):
    import json

    from cxratlas.figure_check import CHECKS_ENV

    rng = np.random.default_rng(2)
    centres = np.array([(i, j) for i in range(6) for j in range(5)], float) * 3
    xy = np.vstack([c + rng.normal(scale=0.4, size=(20, 2)) for c in centres])
    cluster = np.repeat(np.arange(30), 20)
    reduced = pd.DataFrame({"image_id": [f"i{i}" for i in range(600)], "x": xy[:, 0],
                            "y": xy[:, 1], "cluster": cluster,
                            "outlier": rng.random(600)})  # fmt: skip
    names = {f"c{k}": f"c{k} · a long name for cluster {k}, as real ones are" for k in range(30)}
    monkeypatch.setenv(CHECKS_ENV, str(tmp_path / "checks"))
    drawn = cluster_map(reduced, names, "m", str(tmp_path / "clusters"))
    assert 20 <= drawn <= 30
    for record in (tmp_path / "checks").glob("*.json"):
        assert json.loads(record.read_text())["problems"] == []


def test_a_tall_grid_of_small_multiples_keeps_its_title_clear_of_the_panels(tmp_path, monkeypatch):
    """NIH's 15 findings and 4 attributes make a 5-row grid: the figure's title stays above the
    first row's panel titles (the layout check finds no text over text)."""
    import cxratlas.analysis.maps as maps
    from cxratlas.figure_check import check_figure

    reduced = _map()
    n = len(reduced)
    findings = tuple(f"finding_{i}" for i in range(15))
    manifest = pd.DataFrame({"view_position": np.repeat(["PA", "LATERAL", "AP"], n // 3),
                             "dataset": np.tile(["a", "b"], n // 2),
                             "sex": np.tile(["F", "M"], n // 2),
                             **{f: pd.array(np.tile([1, 0, 0], n // 3), "Int8")
                                for f in findings}})  # fmt: skip
    problems = []
    monkeypatch.setattr(maps, "_save", lambda fig, out, model: problems.extend(
        check_figure(fig).problems))  # fmt: skip
    titles = maps.small_multiples(reduced, manifest, findings, (), "m", str(tmp_path / "m"))
    assert len(titles) == 18
    assert not [p for p in problems if "over" in str(p)], problems
