"""Is a model's clustering a plateau or a knife edge? HDBSCAN re-run over a sweep of
`min_cluster_size` around the configured one, on the same map.

Per setting: clusters, noise share, and the ARI with the neighbouring (next smaller) setting and
with the workflow's own clusters. Noise stays its own state: ARI counts it as one label, and the
noise share is reported, never folded into a cluster. A noise share above
`analysis.clusters.max_noise` at the configured setting is an alert.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cxratlas.figures import save_figure
from cxratlas.logs import alert

log = logging.getLogger(__name__)

FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
PLATEAU_ARI = 0.8  # both neighbours of the configured setting at least this close: a plateau
COLUMNS = ["model", "min_cluster_size", "configured", "clusters", "noise_share",
           "ari_with_previous", "ari_with_workflow"]  # fmt: skip


def sweep_sizes(configured: int, n: int) -> list[int]:
    """min_cluster_size values around the configured one, 2 to n // 2."""
    sizes = {max(2, round(configured * f)) for f in FACTORS} | {configured}
    return sorted(s for s in sizes if s <= max(2, n // 2))


def cluster_stability(
    reduced: pd.DataFrame, model: str, min_cluster_size: int, min_samples: int | None,
    max_noise: float, space: str = "map",
) -> tuple[pd.DataFrame, str]:  # fmt: skip
    """(one row per setting, verdict): the sweep on the reduced map's x, y. With
    `reduce.cluster.space: umap` the workflow clustered a higher-dimensional UMAP that is not
    kept, so the verdict says the sweep describes the map's clustering, not the workflow's."""
    from sklearn.metrics import adjusted_rand_score

    from cxratlas.reduce.cpu import CPUBackend

    Y = reduced[["x", "y"]].to_numpy(np.float64)
    workflow = reduced["cluster"].to_numpy()
    rows, previous = [], None
    for size in sweep_sizes(min_cluster_size, len(Y)):
        labels = CPUBackend().hdbscan(Y, size, min_samples)
        rows.append({
            "model": model, "min_cluster_size": size, "configured": size == min_cluster_size,
            "clusters": int(len(set(labels.tolist()) - {-1})),
            "noise_share": float((labels == -1).mean()),
            "ari_with_previous": np.nan if previous is None
            else float(adjusted_rand_score(previous, labels)),
            "ari_with_workflow": float(adjusted_rand_score(workflow, labels)),
        })  # fmt: skip
        previous = labels
    table = pd.DataFrame(rows, columns=COLUMNS)
    verdict = _verdict(table, model)
    if space != "map":
        verdict += " [swept on the 2-D map; the workflow clustered a UMAP of reduce.cluster.dims]"
    noise = table.loc[table["configured"], "noise_share"]
    if len(noise) and noise.iloc[0] > max_noise:
        alert(log, "%s: %.0f%% of images are noise at min_cluster_size %d (above "
              "analysis.clusters.max_noise %.0f%%): lower reduce.cluster.min_cluster_size",
              model, 100 * noise.iloc[0], min_cluster_size, 100 * max_noise)  # fmt: skip
    log.info("%s", verdict)
    return table, verdict


def _verdict(table: pd.DataFrame, model: str) -> str:
    at = int(np.flatnonzero(table["configured"].to_numpy())[0]) if table["configured"].any() else -1
    if at < 0 or len(table) < 2:
        return f"{model}: too few images to sweep min_cluster_size"
    around = table["ari_with_previous"].iloc[[i for i in (at, at + 1) if 0 < i < len(table)]]
    worst = float(around.min())
    kind = "a plateau" if worst >= PLATEAU_ARI else "a knife edge"
    return (f"{model}: {kind} at min_cluster_size {table['min_cluster_size'].iloc[at]} "
            f"(ARI with the neighbouring settings >= {worst:.2f})")  # fmt: skip


def stability_plot(table: pd.DataFrame, verdict: str, out_path: str) -> None:
    """Clusters, noise share and ARI against min_cluster_size on a log axis, ticked at the
    swept sizes in plain numbers (the configured one always labelled, close neighbours'
    labels dropped rather than drawn over each other)."""
    from cxratlas.analysis.plots import plain_log_ticks, plt, say_why, thin_tick_labels

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    x = table["min_cluster_size"]
    configured = x[table["configured"]].tolist()
    panels = (("clusters", "clusters"), ("noise_share", "noise share"),
              ("ari_with_previous", "ARI with the previous setting"))  # fmt: skip
    for ax, (col, label) in zip(axes, panels, strict=True):
        ax.set_title(label, fontsize=10)
        if table[col].notna().sum() == 0:
            say_why(ax, f"no {label}: {len(table)} setting(s) swept")
            continue
        ax.plot(x, table[col], "o-")
        plain_log_ticks(ax, x)  # the swept sizes are the ticks
        ax.set_xlabel("min_cluster_size")
        for c in configured:
            ax.axvline(c, color="grey", ls="--", lw=0.8)
    axes[1].set_ylim(-0.02, 1.02)  # a share of 0 or 1 drawn whole, not cut by the frame
    axes[2].set_ylim(-0.02, 1.05)
    fig.suptitle(verdict, fontsize=9)
    fig.tight_layout()
    for ax in axes:
        thin_tick_labels(ax, keep=configured)
    save_figure(fig, out_path, dpi=120)
    plt.close(fig)
