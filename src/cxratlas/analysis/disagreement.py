"""Where models disagree: the images whose neighbourhoods the models share least, shown with
each model's nearest neighbours side by side, and how agreement changes with the sample size.

Agreement between models is known to fall as the sample grows (mutual-kNN overlap shrinks when
more candidates compete for the k slots), so `agreement_curve` measures it on nested random
subsamples (1k, 2k, 5k, ... up to `curve_max`, and at least three sizes on small runs): per pair,
the mean per-image Jaccard of exact cosine k-NN sets, and linear CKA.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cxratlas.analysis.compare import linear_cka
from cxratlas.analysis.enrichment import contact_sheet
from cxratlas.figures import save_figure
from cxratlas.io import (
    ATLAS_AGREEMENT,
    ATLAS_IMAGE,
    AtlasModelColumns,
    pair_agreement_column,
)
from cxratlas.reduce.knn import l2_normalise, search_blocks
from cxratlas.reduce.neighbours import knn_jaccard

log = logging.getLogger(__name__)

STEPS = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
CURVE_COLUMNS = ["model_a", "model_b", "n", "mutual_knn_jaccard", "cka"]


def curve_sizes(n: int, cap: int) -> list[int]:
    """Nested sample sizes: the standard steps below min(n, cap), then min(n, cap); on a small
    run a quarter and a half of it, so a curve has three points."""
    top = min(n, cap)
    sizes = [s for s in STEPS if s < top] + [top]
    if len(sizes) < 3:
        sizes = sorted({max(2, top // 4), max(2, top // 2), *sizes})
    return sizes


def agreement_curve(vectors: dict[str, np.ndarray], k: int, cap: int, seed: int) -> pd.DataFrame:
    """`vectors`: each model's embeddings of the same images, in the same row order."""
    n = len(next(iter(vectors.values())))
    order = np.random.default_rng(seed).permutation(n)  # prefixes: nested samples
    rows = []
    for size in curve_sizes(n, cap):
        pick = np.sort(order[:size])
        kk = min(k, size - 1)
        nbrs, normed = {}, {}
        for m, X in vectors.items():
            normed[m] = l2_normalise(X[pick])
            nbrs[m] = search_blocks(normed[m], None, kk)[0]  # each image itself first
        for a, b in itertools.combinations(vectors, 2):
            rows.append({"model_a": a, "model_b": b, "n": size,
                         "mutual_knn_jaccard": float(knn_jaccard(nbrs[a], nbrs[b]).mean()),
                         "cka": linear_cka(normed[a], normed[b])})  # fmt: skip
        log.info(
            "agreement at n=%d: %s",
            size,
            ", ".join(
                f"{r['model_a']}~{r['model_b']} {r['mutual_knn_jaccard']:.3f}" for r in rows[-3:]
            ),
        )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def disagreed_images(atlas_path: str, models: list[str], count: int) -> pd.DataFrame:
    """The `count` atlas rows the models agree on least (lowest mean agreement), with every
    pair's agreement."""
    pairs = [pair_agreement_column(a, b) for a, b in itertools.combinations(models, 2)]
    table = pq.read_table(atlas_path, columns=["image_id", ATLAS_AGREEMENT, *pairs]).to_pandas()
    table.insert(0, "row", np.arange(len(table)))
    return table.nsmallest(count, ATLAS_AGREEMENT, keep="first").reset_index(drop=True)


def disagreement_sheet(
    atlas_path: str, models: list[str], images: pd.DataFrame, neighbours: int
) -> bytes:
    """A row per image: the image, then each model's nearest neighbours, model after model."""
    own = [AtlasModelColumns(m) for m in models]
    atlas = pq.read_table(atlas_path, columns=[ATLAS_IMAGE, *(c.neighbors for c in own)])
    thumbs = atlas.column(ATLAS_IMAGE).to_pylist()
    rows = {}
    for r in images.itertuples():
        cells = [thumbs[r.row], None]
        for c in own:
            ids = atlas.column(c.neighbors)[r.row].as_py()["ids"]
            near = [i for i in ids if i != r.row][:neighbours]
            cells += [thumbs[i] for i in near] + [None] * (neighbours - len(near)) + [None]
        rows[f"{r.image_id[:14]} {getattr(r, ATLAS_AGREEMENT):.2f}"] = cells
    title = (f"The {len(rows)} images the models agree on least: each image, then its nearest "
             f"{neighbours} in each model (row label: image id, mean agreement)")  # fmt: skip
    headers = {0: "image"} | {2 + i * (neighbours + 1): f"nearest in {m}"
                              for i, m in enumerate(models)}  # fmt: skip
    return contact_sheet(rows, title=title, headers=headers)


def curve_plot(curve: pd.DataFrame, out_path: str) -> None:
    """Mutual kNN and CKA of every model pair against the sample size; the pairs' key beside
    the second panel (agreement near 1 would put a key inside the axes over the lines)."""
    from cxratlas.analysis.plots import legend_beside, plain_log_ticks, plt, thin_tick_labels

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for (a, b), sub in curve.groupby(["model_a", "model_b"], sort=False):
        for ax, col in zip(axes, ("mutual_knn_jaccard", "cka"), strict=True):
            ax.plot(sub["n"], sub[col], "o-", label=f"{a} ~ {b}")
    for ax, title in zip(axes, ("mutual kNN (Jaccard of k-NN sets)", "linear CKA"), strict=True):
        plain_log_ticks(ax, curve["n"])
        ax.set_xlabel("images in the sample")
        ax.set_ylim(0, 1.03)  # an agreement of 1 drawn whole
        ax.set_title(title, fontsize=10)
    legend_beside(axes[1], fontsize=7, title="model pair")
    fig.tight_layout()
    for ax in axes:
        thin_tick_labels(ax, keep=[curve["n"].max()])
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
