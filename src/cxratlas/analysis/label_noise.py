"""Label-noise sensitivity: what happens to the analyses when one finding is mislabelled.

For each fraction f, f of the images with a known label (0/1) get it flipped at random, in
`repeats` seeded draws (each with its own patient folds). Per model and draw the probe is trained
on the flipped labels, and its out-of-fold scores are scored twice:

- `auroc_clean`, against the original labels: how much the errors harm what the model learns.
  This is the robustness a study needs to know, and the only curve a "fragile" lead reads;
- `auroc_noisy`, against the flipped labels: what a user whose labels hold those errors would
  measure. It falls even for a probe the errors did not harm at all, since a flipped label makes
  a right answer count as wrong; `expected_noisy` is that fall alone, computed from the
  clean-label AUROC at f = 0 (`attenuated`), so the two can be read side by side.

Beside the probe: the strongest enrichment of the flipped label in any cluster (odds ratio) and
the agreement of the clusters with it (NMI), what the cluster report would show that user. Each
number is given per draw; `noise_summary` gives the mean and the 95% interval over the draws.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxratlas.analysis.enrichment import enrichment, model_groups
from cxratlas.analysis.metrics import auroc
from cxratlas.analysis.probes import (
    KNOWN_ONLY,
    SCORED,
    SKIPPED,
    LabelPolicy,
    ProbeSettings,
    common_embeddings,
    finding_labels,
    patient_groups,
    probe_scores,
    too_few,
)
from cxratlas.figures import save_figure

log = logging.getLogger(__name__)


def flip(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A copy of 0/1 `labels` with round(fraction * n) of them flipped, chosen at random."""
    out = labels.copy()
    idx = np.random.default_rng(seed).choice(len(out), round(fraction * len(out)), replace=False)
    out[idx] = 1 - out[idx]
    return out


AUTO = "auto"
COLUMNS = ["model", "finding", "fraction", "repeat", "n", "auroc_clean", "auroc_noisy",
           "expected_noisy", "max_odds_ratio", "cluster_nmi", "status", "reason"]  # fmt: skip
CURVES = ["auroc_clean", "auroc_noisy", "expected_noisy", "max_odds_ratio", "cluster_nmi"]


def attenuated(auroc_clean: float, fraction: float, prevalence: float) -> float:
    """The AUROC that scores of clean-label AUROC `auroc_clean` show against labels of which a
    `fraction` were flipped at random: flipped positives join the negatives and flipped
    negatives the positives, and a pair of one true class scores 0.5 on average."""
    f, p, n = fraction, prevalence, 1 - prevalence
    pos_pos, pos_neg = (1 - f) * p, f * n  # noisy positives: kept positives, flipped negatives
    neg_neg, neg_pos = (1 - f) * n, f * p  # noisy negatives: kept negatives, flipped positives
    a = auroc_clean
    total = (pos_pos + pos_neg) * (neg_neg + neg_pos)
    return float((pos_pos * neg_neg * a + pos_pos * neg_pos * 0.5 + pos_neg * neg_neg * 0.5
                  + pos_neg * neg_pos * (1 - a)) / total)  # fmt: skip


def choose_finding(
    manifest: pd.DataFrame,
    findings: tuple[str, ...],
    ids: pd.Index,
    min_count: int,
    policy: LabelPolicy = KNOWN_ONLY,
) -> tuple[str | None, str]:
    """(finding, why): the most balanced finding over `ids` (the largest minority class among
    0/1 labels, read as the probes read them), or None with the reason no finding qualifies."""
    best, best_minority = None, -1
    for f in findings:
        y = finding_labels(manifest, f, policy).reindex(ids).dropna()
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


@dataclass(frozen=True)
class NoiseSettings:
    """`analysis.label_noise` (with the probes' settings and `analysis.seed`), built once."""

    finding: str | None = AUTO  # auto: the most balanced finding; a name; None: skip
    fractions: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3)
    repeats: int = 5  # seeded draws of the flipped labels (and folds) per fraction
    max_images: int | None = 20000  # a seeded sample of the labelled images past this
    probes: ProbeSettings = field(default_factory=ProbeSettings)

    @classmethod
    def from_config(cls, noise: dict, probes: dict, seed: int) -> NoiseSettings:
        return cls(noise["finding"], tuple(noise["fractions"]), noise["repeats"],
                   noise["max_images"], ProbeSettings.from_config({"probes": probes,
                                                                   "seed": seed}))  # fmt: skip


def label_noise_sensitivity(
    embeddings: dict[str, str],
    reduced: dict[str, str],
    manifest_path: str,
    settings: NoiseSettings | None = None,
) -> tuple[pd.DataFrame, str]:
    """(table, why): the finding may be "auto" (the most balanced one, with at least
    `probes.min_positives` in each class); when none qualifies the table holds a skipped row
    per model and `why` says so, for the figure and the report."""
    from cxratlas.io import read_manifest

    s = settings or NoiseSettings()
    manifest, columns = read_manifest(manifest_path)
    manifest = manifest.set_index("image_id")
    loaded, common = common_embeddings(embeddings)
    finding, why = _resolve_finding(s.finding, manifest, columns.findings,
                                    manifest.index.intersection(common, sort=False),
                                    s.probes.min_positives, s.probes.labels)  # fmt: skip
    if finding is not None:  # a finding the user named may still be too rare to flip
        clean = finding_labels(manifest, finding, s.probes.labels).reindex(common).dropna()
        short = too_few(int(clean.sum()), len(clean), s.probes.min_positives)
        why = f"{finding}: {short}" if short else why
        finding = None if short else finding
    if finding is None:  # one row per model where its curve would be, saying why
        log.warning("label noise skipped: %s", why)
        rows = [{"model": m, "finding": "", "status": SKIPPED, "reason": why} for m in loaded]
        return pd.DataFrame(rows, columns=COLUMNS), why
    log.info("label noise on %s, %d draws per fraction", why, s.repeats)
    clean = finding_labels(manifest, finding, s.probes.labels).reindex(common).dropna()
    keep = _capped(clean.index, s.max_images, s.probes.seed)
    groups = patient_groups(manifest, keep).to_numpy()
    rows = []
    for m, (ids, X, _) in loaded.items():
        red = pd.read_parquet(reduced[m], columns=["image_id", "cluster", "outlier"])
        red = red.set_index("image_id").loc[keep].reset_index()
        rows += _noise_curve(m, finding, X[pd.Index(ids).get_indexer(keep)],
                             clean.loc[keep].to_numpy().astype(np.int64), groups, red,
                             s.fractions, s)  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS), why


def _capped(ids: pd.Index, max_images: int | None, seed: int) -> pd.Index:
    """`ids` sorted, or a seeded sample of `max_images` of them: the same images whatever
    order the embeddings arrived in."""
    ids = ids.sort_values()
    if max_images is None or len(ids) <= max_images:
        return ids
    return ids[np.sort(np.random.default_rng(seed).choice(len(ids), max_images, replace=False))]


def _resolve_finding(
    finding: str,
    manifest: pd.DataFrame,
    findings: tuple[str, ...],
    ids: pd.Index,
    min_count: int,
    policy: LabelPolicy,
) -> tuple[str | None, str]:
    if finding == AUTO:
        return choose_finding(manifest, findings, ids, min_count, policy)
    if finding not in findings:
        raise KeyError(
            f"analysis.label_noise.finding {finding!r} is not a finding of the manifest; "
            f"its findings are {list(findings)}"
        )
    return finding, f"{finding}: named in analysis.label_noise.finding"


def _noise_curve(model, finding, X, y_clean, groups, red, fractions, s: NoiseSettings) -> list:
    """One row per fraction and draw: the probe against both labels, the strongest cluster
    enrichment and the cluster-label NMI of the flipped labels."""
    from sklearn.metrics import normalized_mutual_info_score

    masks = {g: v for g, v in model_groups(red, 0.95).items() if g.startswith("c")}
    rows = []
    for fraction in fractions:
        for repeat in range(s.repeats):
            seed = s.probes.seed + repeat
            y = flip(y_clean, fraction, seed)
            score, _ = probe_scores(X, y, groups, s.probes.folds, seed)
            enr = enrichment(masks, pd.DataFrame({finding: y}))
            rows.append({
                "model": model, "finding": finding, "fraction": fraction, "repeat": repeat,
                "n": len(y),
                "auroc_clean": auroc(y_clean, score) if score is not None else np.nan,
                "auroc_noisy": auroc(y, score) if score is not None else np.nan,
                "max_odds_ratio": float(enr["odds_ratio"].max()) if len(enr) else np.nan,
                "cluster_nmi": float(normalized_mutual_info_score(y, red["cluster"])),
                "status": SCORED, "reason": "",
            })  # fmt: skip
    table = pd.DataFrame(rows)
    start = table.loc[table["fraction"] == 0, "auroc_clean"].mean()
    table["expected_noisy"] = [attenuated(start, f, float(y_clean.mean()))
                               for f in table["fraction"]]  # fmt: skip
    return table.to_dict("records")


def noise_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, finding and fraction: each curve's mean over the draws and its 95% interval
    (the 2.5th and 97.5th percentiles of the draws: where one study's draw may fall)."""
    scored = table[table["status"] == SCORED]
    grouped = scored.groupby(["model", "finding", "fraction"], sort=False)[CURVES]
    mean = grouped.mean()
    low, high = grouped.quantile(0.025), grouped.quantile(0.975)
    out = pd.concat([mean, low.add_suffix("_low"), high.add_suffix("_high")], axis=1)
    return out.assign(repeats=grouped.size()).reset_index()


PANELS = [
    ("auroc", "probe AUROC"),
    ("max_odds_ratio", "strongest cluster odds ratio\n(flipped labels)"),
    ("cluster_nmi", "NMI of clusters and\nflipped labels"),
]
AUROC_LINES = [
    ("auroc_clean", "-", "o", "against the original labels (what the errors cost)"),
    ("auroc_noisy", "--", "s", "against the flipped labels (what a user measures)"),
    ("expected_noisy", ":", None, "expected from the scoring alone (probe unharmed)"),
]


def label_noise_plot(table: pd.DataFrame, out_path: str, why: str = "") -> None:
    """Three panels over the fraction flipped: the probe's AUROC against the original and the
    flipped labels beside the attenuation the flips alone explain, the strongest cluster
    enrichment, and the clusters' NMI with the label; lines are means over the draws, bands
    their 95% interval. A skipped step is a sentence saying why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    scored = table[table["status"] == SCORED] if "status" in table else table
    if scored.empty:  # the figure says why, so the report does too
        fig = plt.figure(figsize=(9, 1.6))
        fig.text(0.5, 0.5, f"Label-noise step skipped:\n{why}", ha="center", va="center",
                 wrap=True)  # fmt: skip
        save_figure(fig, out_path, dpi=110)
        plt.close(fig)
        return
    summary = noise_summary(scored)
    models = list(dict.fromkeys(summary["model"]))
    colours = dict(zip(models, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    for m, sub in summary.groupby("model", sort=False):
        x = sub["fraction"] * 100
        for col, style, marker, _ in AUROC_LINES:
            axes[0].plot(x, sub[col], ls=style, marker=marker, ms=4, color=colours[m])
        axes[0].fill_between(x, sub["auroc_clean_low"], sub["auroc_clean_high"], alpha=0.2,
                             color=colours[m], lw=0)  # fmt: skip
        for ax, col in zip(axes[1:], ("max_odds_ratio", "cluster_nmi"), strict=True):
            ax.plot(x, sub[col], marker="o", ms=4, color=colours[m])
            ax.fill_between(x, sub[f"{col}_low"], sub[f"{col}_high"], alpha=0.2,
                            color=colours[m], lw=0)  # fmt: skip
    _axes_style(axes, summary)
    fig.legend(handles=[Line2D([], [], color=colours[m], lw=6, alpha=0.6, label=m)
                        for m in models], loc="lower left", bbox_to_anchor=(0.04, 0),
               fontsize=8, frameon=False, title="model", title_fontsize=8)  # fmt: skip
    fig.legend(handles=[Line2D([], [], color="black", ls=style, marker=marker, ms=4, label=label)
                        for _, style, marker, label in AUROC_LINES],
               loc="lower left", bbox_to_anchor=(0.3, 0), fontsize=8, frameon=False,
               title="probe AUROC, scored", title_fontsize=8)  # fmt: skip
    finding = summary["finding"].iloc[0]
    repeats = int(summary["repeats"].max())
    fig.suptitle(f"Label noise on {finding}: {repeats} random draws per fraction "
                 f"(lines: mean; bands: 95% interval)", fontsize=10)  # fmt: skip
    rows = max(len(models), len(AUROC_LINES)) + 1  # the legends' lines, their titles included
    fig.tight_layout(rect=(0, 0.02 + 0.04 * rows, 1, 1))
    save_figure(fig, out_path, dpi=110)
    plt.close(fig)


def _axes_style(axes, summary: pd.DataFrame) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ticks = sorted(summary["fraction"].unique() * 100)
    for ax, (_, title) in zip(axes, PANELS, strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("labels flipped (%)")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    low = min(0.45, float(summary[["auroc_clean_low", "auroc_noisy", "expected_noisy"]].min()
                           .min()) - 0.03)  # fmt: skip
    axes[0].set_ylim(low, 1.0)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[1].set_yscale("log")
    # decades and their 2 and 5, as plain numbers: the default labels every minor tick of a
    # short log axis, and they overlap
    axes[1].yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes[1].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes[1].yaxis.set_minor_formatter(NullFormatter())
