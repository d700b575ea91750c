"""Figures for the report: probe AUROCs with CIs, and pairwise model agreement heatmaps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # jobs run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cxratlas.io import save_figure


def probe_plot(table: pd.DataFrame, out_path: str) -> None:
    """One panel row: per finding, each model's AUROC as a point with its 95% CI; findings
    skipped for too few positives or negatives are named under the axis."""
    skipped = table[table.get("status", pd.Series(dtype=str)) == "skipped"]
    table = table.drop(skipped.index)
    findings = list(dict.fromkeys(table["finding"])) or ["(none)"]
    models = list(dict.fromkeys(table["model"]))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(findings), 3.6))
    if table.empty:  # every finding had too few positives or negatives in this sample
        ax.text(0.5, 0.5, "no finding had enough positives and negatives\n"
                "(analysis.probes.min_positives)", ha="center", va="center")  # fmt: skip
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
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(findings)), findings, rotation=30, ha="right")
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("AUROC (out-of-fold, 95% CI)")
    if models:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout(rect=(0, 0.06 if len(skipped) else 0, 1, 1))
    save_figure(fig, out_path, dpi=120)
    plt.close(fig)


def agreement_heatmaps(pairs: pd.DataFrame, models: list[str], out_path: str) -> None:
    """Symmetric heatmaps of Jaccard@k, linear CKA and cluster ARI between every two models."""
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
        for i in range(len(models)):
            for j in range(len(models)):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", color="w", fontsize=7)
        ax.set_title(title)
    fig.colorbar(im, ax=axes, shrink=0.8)
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
