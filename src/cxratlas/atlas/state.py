"""The viewer state: Embedding Atlas `--state`, one linked embedding view per model, then the
charts a reader filters by (dataset, view, vendor, the user's attributes, clusters, findings,
agreement and outlier histograms)."""

from __future__ import annotations

from typing import Any

from cxratlas.io import (
    ATLAS_AGREEMENT,
    ATLAS_FINDINGS,
    ATLAS_IMAGE,
    CALLS_PREFIX,
    SLICES_PREFIX,
    AtlasModelColumns,
)

COUNT_FIELDS = ("dataset", "view_position", "manufacturer", "sex", "age_band")
# Embedding Atlas's count plots cut a category at 150 px by default: a cluster's label (about 35
# characters, `analysis/naming.py`) needs a little more, the bars keep the rest of the panel
NAME_WIDTH = 210


def atlas_state(
    models: list[str], cols: dict[str, Any], attributes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The state for an atlas with columns `cols`; the user's attributes (site, race, ...) get
    count plots next to view and vendor."""
    own = [AtlasModelColumns(m) for m in models]
    charts: list[dict[str, Any]] = [_embedding_view(c) for c in own]
    fields = (*dict.fromkeys((*COUNT_FIELDS, *attributes)), *(c.cluster_label for c in own))
    names = {c.cluster_label for c in own}
    charts += [
        _count_plot(f, width=NAME_WIDTH if f in names else None) for f in fields if f in cols
    ]
    if ATLAS_FINDINGS in cols:
        charts.append(_count_plot(ATLAS_FINDINGS, is_list=True))
    # each classifier's error slices on these models' maps (`slices_<classifier>_<model>`)
    ends = tuple(f"_{m}" for m in models)
    charts += [_count_plot(c, is_list=True) for c in cols
               if c.startswith(SLICES_PREFIX) and c.endswith(ends)]  # fmt: skip
    # ... and their calls (TP, TN, FP, FN): click FN to see where one misses
    charts += [_count_plot(c) for c in cols if c.startswith(CALLS_PREFIX)]
    # brushing a histogram selects, e.g., the images the models disagree on, in every view
    charts += [histogram(f) for f in (ATLAS_AGREEMENT, *(c.outlier for c in own)) if f in cols]
    charts.append({"type": "instances", "title": "Images"})
    return {"charts": {str(i): chart for i, chart in enumerate(charts, start=1)}}


def _embedding_view(c: AtlasModelColumns) -> dict[str, Any]:
    return {
        "type": "embedding",
        "title": c.model,
        "data": {
            "x": c.x,
            "y": c.y,
            "image": ATLAS_IMAGE,
            "neighbors": c.neighbors,
            "importance": c.pagerank,
            "category": c.cluster_label,  # the legend lists the clusters' names
        },
    }


def _count_plot(field: str, is_list: bool = False, width: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"field": field, **({"isList": True} if is_list else {})}
    chart = {"type": "count-plot", "title": field, "data": data}
    return chart | ({"categoryWidth": width} if width else {})


def histogram(field: str) -> dict[str, Any]:
    """A brushable histogram chart, in the spec Embedding Atlas 0.26 builds for numeric columns
    by default (its charts have no `type`, only layers)."""
    bars = {"mark": "bar", "encoding": {"x": {"field": field}, "y": {"aggregate": "count"}}}
    return {
        "title": field,
        "layers": [
            {**bars, "style": {"fillColor": "$markColorFade"}},
            {**bars, "filter": "$filter"},
        ],
        "selection": {"brush": {"encoding": "x"}},
        "widgets": [
            {"type": "scale.type", "channel": "x"},
            {"type": "encoding.normalize", "attribute": "y", "layer": [0, 1], "options": ["x"]},
        ],
    }
