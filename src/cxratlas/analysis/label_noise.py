"""Label-noise sensitivity: what happens to the analyses when one finding is mislabelled.

For each fraction f, f of the images with a known label (0/1) get it flipped (seeded); per model
we recompute the probe AUROC (trained and scored on the noisy labels, as a user with noisy labels
would), the strongest enrichment of the finding in any cluster (odds ratio), and the agreement
of the clusters with the label (NMI). The curves show how fast each conclusion degrades.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cxratlas.analysis.enrichment import enrichment, model_groups
from cxratlas.analysis.probes import (
    SCORED,
    SKIPPED,
    ProbeSettings,
    common_embeddings,
    finding_labels,
    patient_groups,
    probe_auroc,
    too_few,
)
from cxratlas.io import save_figure

log = logging.getLogger(__name__)


def flip(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A copy of 0/1 `labels` with round(fraction * n) of them flipped, chosen at random."""
    out = labels.copy()
    idx = np.random.default_rng(seed).choice(len(out), round(fraction * len(out)), replace=False)
    out[idx] = 1 - out[idx]
    return out


AUTO = "auto"
COLUMNS = ["model", "finding", "fraction", "n", "probe_auroc", "max_odds_ratio", "cluster_nmi",
           "status", "reason"]  # fmt: skip


def choose_finding(
    manifest: pd.DataFrame, findings: tuple[str, ...], ids: pd.Index, min_count: int
) -> tuple[str | None, str]:
    """(finding, why): the most balanced finding over `ids` (the largest minority class among
    known 0/1 labels), or None with the reason no finding qualifies."""
    best, best_minority = None, -1
    for f in findings:
        y = finding_labels(manifest, f).reindex(ids).dropna()
        minority = int(min(y.sum(), len(y) - y.sum()))
        if minority > best_minority:
            best, best_minority = f, minority
    if best is None:
        return None, "the manifest has no finding column"
    if best_minority < min_count:
        return None, (
            f"no finding has {min_count} positive and {min_count} negative images among the "
            f"{len(ids)} embedded (the most balanced, {best}, has {best_minority})"
        )
    return best, f"{best}: the most balanced finding ({best_minority} in its smaller class)"


def label_noise_sensitivity(
    embeddings: dict[str, str],
    reduced: dict[str, str],
    manifest_path: str,
    finding: str,
    fractions: list[float],
    probes: ProbeSettings | None = None,
) -> tuple[pd.DataFrame, str]:
    """(table, why): `finding` may be "auto" (the most balanced one, with at least
    `probes.min_positives` in each class); when none qualifies the table is empty and `why`
    says so, for the figure and the report."""
    from cxratlas.io import read_manifest

    s = probes or ProbeSettings()
    manifest, columns = read_manifest(manifest_path)
    manifest = manifest.set_index("image_id")
    loaded, common = common_embeddings(embeddings)
    finding, why = _resolve_finding(finding, manifest, columns.findings,
                                    manifest.index.intersection(common, sort=False),
                                    s.min_positives)  # fmt: skip
    if finding is not None:  # a finding the user named may still be too rare to flip
        clean = finding_labels(manifest, finding).reindex(common).dropna()
        short = too_few(int(clean.sum()), len(clean), s.min_positives)
        why = f"{finding}: {short}" if short else why
        finding = None if short else finding
    if finding is None:  # one row per model where its curve would be, saying why
        log.warning("label noise skipped: %s", why)
        rows = [{"model": m, "finding": "", "status": SKIPPED, "reason": why} for m in loaded]
        return pd.DataFrame(rows, columns=COLUMNS), why
    log.info("label noise on %s", why)
    clean = finding_labels(manifest, finding)
    rows = []
    for m, (ids, X, _) in loaded.items():
        keep = pd.Index(ids).intersection(clean.index, sort=False)
        red = pd.read_parquet(reduced[m], columns=["image_id", "cluster", "outlier"])
        red = red.set_index("image_id").loc[keep].reset_index()
        X = X[pd.Index(ids).get_indexer(keep)]
        groups = patient_groups(manifest, keep).to_numpy()
        rows += _noise_curve(m, finding, X, clean.loc[keep].to_numpy(), groups, red,
                             fractions, s)  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS), why


def _resolve_finding(
    finding: str, manifest: pd.DataFrame, findings: tuple[str, ...], ids: pd.Index, min_count: int
) -> tuple[str | None, str]:
    if finding == AUTO:
        return choose_finding(manifest, findings, ids, min_count)
    if finding not in findings:
        raise KeyError(
            f"analysis.label_noise.finding {finding!r} is not a finding of the manifest; "
            f"its findings are {list(findings)}"
        )
    return finding, f"{finding}: named in analysis.label_noise.finding"


def _noise_curve(model, finding, X, y_clean, groups, red, fractions, s: ProbeSettings) -> list:
    """One row per fraction: the probe, the strongest cluster enrichment, cluster-label NMI."""
    from sklearn.metrics import normalized_mutual_info_score

    masks = {g: v for g, v in model_groups(red, 0.95).items() if g.startswith("c")}
    rows = []
    for fraction in fractions:
        y = flip(y_clean, fraction, s.seed)
        probe = probe_auroc(X, y, groups, folds=s.folds, bootstrap=0, seed=s.seed)
        enr = enrichment(masks, pd.DataFrame({finding: y}))
        rows.append(
            {
                "model": model,
                "finding": finding,
                "fraction": fraction,
                "n": len(y),
                "probe_auroc": probe["auroc"],
                "max_odds_ratio": float(enr["odds_ratio"].max()) if len(enr) else np.nan,
                "cluster_nmi": float(normalized_mutual_info_score(y, red["cluster"])),
                "status": SCORED,
                "reason": "",
            }
        )
    return rows


def label_noise_plot(table: pd.DataFrame, out_path: str, why: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("probe_auroc", "probe AUROC"), ("max_odds_ratio", "max cluster odds ratio"),
              ("cluster_nmi", "NMI(clusters, label)")]  # fmt: skip
    table = table[table["status"] == SCORED] if "status" in table else table
    if table.empty:  # the figure says why, so the report does too
        fig, ax = plt.subplots(figsize=(13, 2.0))
        ax.axis("off")
        ax.text(0.5, 0.5, f"Label-noise step skipped:\n{why}", ha="center", va="center")
        save_figure(fig, out_path, dpi=110)
        plt.close(fig)
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (col, title) in zip(axes, panels, strict=True):
        for m, sub in table.groupby("model", sort=False):
            ax.plot(sub["fraction"], sub[col], marker="o", label=m)
        ax.set_xlabel("fraction of labels flipped")
        ax.set_title(title)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Label-noise sensitivity: {why}")
    fig.tight_layout()
    save_figure(fig, out_path, dpi=110)
    plt.close(fig)
