"""One classifier in one model's space: every finding's slices, scored and described.

`slice_classifier` is the job `rules/slices.smk` runs per (classifier, model): the model's
embeddings reduced by PCA once, then per finding the mixture slices (`search`) and the map's
clusters, scored on held-out images, each row with its reason where a finding cannot be
searched. The p-values are adjusted across the classifier's findings and models afterwards
(`across`), where the recurrence across models is found too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.slices.describe import Describer
from cxratlas.slices.mixture import MixtureSettings
from cxratlas.slices.score import ScoreSettings, youden_threshold
from cxratlas.slices.search import (
    Found,
    Scorer,
    SearchSettings,
    cluster_rows,
    mixture_slices,
    patient_halves,
    scored,
)

log = logging.getLogger(__name__)

TABLE_COLUMNS = [
    "classifier", "finding", "model", "method", "slice", "found_on", "n_images", "n_patients",
    "positives", "negatives", "metric", "auroc_in", "auroc_in_low", "auroc_in_high", "auroc_out",
    "drop", "bnsp", "bpsn", "threshold", "fn", "fp", "error_rate_in", "error_rate_out",
    "error_lift", "error_share", "z", "p", "p_adj", "flagged", "description", "attribute",
    "cluster_name", "recurrence", "recurs_in", "status", "reason",
]  # fmt: skip
MEMBER_COLUMNS = ["classifier", "finding", "model", "slice", "image_id", "label", "score",
                  "error", "typicality", "half"]  # fmt: skip
FINDING_COLUMNS = ["classifier", "finding", "model", "n_images", "positives", "negatives",
                   "threshold", "auroc", "errors", "fn", "fp"]  # fmt: skip
SCORED, SKIPPED = "scored", "skipped"
PCA_FIT_MAX = 20000  # images the PCA is fitted on (then applied to all)


@dataclass(frozen=True)
class SliceSettings:
    """What a (classifier, model) job's search reads of `analysis.slices` (and `analysis.seed`),
    built once; `AcrossSettings` holds the rest, so changing how slices are reported reruns no
    search."""

    search: SearchSettings = field(default_factory=SearchSettings)
    pca: int | None = 128  # components of each model's embedding the mixture sees (Domino: 128)
    min_positives: int = 10  # positives (and negatives) a finding needs
    min_errors: int = 10  # errors at the threshold a finding needs
    alpha: float = 0.05  # a map cluster with a higher raw p cannot be flagged: counts only

    KEYS = ("pca", "components", "slices", "label_weight", "score_weight", "fit_max", "min_size",
            "min_class", "min_positives", "min_errors", "merge_jaccard", "bootstrap",
            "alpha")  # fmt: skip

    @classmethod
    def from_config(cls, analysis: dict[str, Any]) -> SliceSettings:
        c, seed = analysis["slices"], analysis["seed"]
        mixture = MixtureSettings(components=c["components"], label_weight=c["label_weight"],
                                  score_weight=c["score_weight"])  # fmt: skip
        score = ScoreSettings(bootstrap=c["bootstrap"], min_class=c["min_class"], seed=seed)
        search = SearchSettings(mixture, score, c["slices"], c["fit_max"], c["min_size"],
                                c["merge_jaccard"], seed)  # fmt: skip
        return cls(search, c["pca"], c["min_positives"], c["min_errors"], c["alpha"])


@dataclass(frozen=True)
class AcrossSettings:
    """What the job across models reads of `analysis.slices`: how slices are reported."""

    alpha: float = 0.05  # BH level (per classifier) a slice is flagged at
    min_drop: float = 0.05  # ... and the AUROC drop it needs to be flagged
    recur_jaccard: float = 0.3  # two models' slices with this member overlap are one finding
    strip_images: int = 8  # typical errors on a slice's strip
    max_strips: int = 12  # slices on a classifier's strip sheet

    KEYS = ("alpha", "min_drop", "recur_jaccard", "strip_images", "max_strips")

    @classmethod
    def from_config(cls, analysis: dict[str, Any]) -> AcrossSettings:
        return cls(**{k: analysis["slices"][k] for k in cls.KEYS})


@dataclass
class SliceRun:
    table: pd.DataFrame  # TABLE_COLUMNS: a row per slice, or per finding skipped
    members: pd.DataFrame  # MEMBER_COLUMNS: every slice's assessed members
    findings: pd.DataFrame  # across.FINDING_COLUMNS: the classifier overall, per finding


def pca_space(X: np.ndarray, components: int | None, seed: int) -> np.ndarray:
    """L2-normalised embeddings (the maps are cosine) reduced by PCA fitted on a seeded
    subsample, in float32 (the mixture's products; its sums are float64)."""
    from sklearn.decomposition import PCA

    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    k = min(components or X.shape[1], X.shape[1], max(1, len(X) - 1))
    if k >= X.shape[1]:
        return X.astype(np.float32)
    rng = np.random.default_rng(seed)
    fit = X if len(X) <= PCA_FIT_MAX else X[rng.choice(len(X), PCA_FIT_MAX, replace=False)]
    pca = PCA(k, svd_solver="randomized", random_state=seed).fit(fit)
    return pca.transform(X).astype(np.float32)


@dataclass
class Space:
    """One model's side of the job: its images, their PCA coordinates and map clusters."""

    model: str
    index: pd.Index  # image ids, rows of `X` and `cluster`
    X: np.ndarray
    cluster: np.ndarray
    names: dict[str, str]  # cluster group ("c3") -> its name on the map


@dataclass
class Context:
    """What every finding of one classifier shares: the manifest and its findings."""

    classifier: str
    manifest: pd.DataFrame  # indexed by image_id
    findings: list[str]
    attributes: tuple[str, ...]
    thresholds: dict[str, float | None]


def skipped(ctx: Context, finding: str, model: str, reason: str, **counts) -> dict:
    log.warning("slices %s / %s / %s skipped: %s", ctx.classifier, finding, model, reason)
    return {"classifier": ctx.classifier, "finding": finding, "model": model, "slice": "",
            "status": SKIPPED, "reason": reason, **counts}  # fmt: skip


def overall(ctx: Context, model: str, finding: str, y, score, threshold) -> dict:
    """The classifier on all of a finding's images in this space: what slices are measured by."""
    from cxratlas.analysis.metrics import auroc

    called = score >= threshold if threshold is not None else np.zeros(len(y), bool)
    fn, fp = int(((y == 1) & ~called).sum()), int(((y == 0) & called).sum())
    return {"classifier": ctx.classifier, "finding": finding, "model": model,
            "n_images": len(y), "positives": int(y.sum()), "negatives": int(len(y) - y.sum()),
            "threshold": threshold, "auroc": auroc(y, score) if len(y) else np.nan,
            "errors": fn + fp, "fn": fn, "fp": fp}  # fmt: skip


def finding_slices(
    ctx: Context, space: Space, finding: str, rows: pd.DataFrame, s: SliceSettings
) -> tuple[list[dict], list[pd.DataFrame], dict]:
    """One finding's slices in one space: table rows, members and the overall numbers
    (`rows`: the classifier's labelled images of this finding)."""
    from cxratlas.analysis.probes import patient_groups, too_few

    y_all, score_all = rows["label"].to_numpy(np.int64), rows["score"].to_numpy(np.float64)
    patients_all = patient_groups(ctx.manifest, pd.Index(rows["image_id"])).to_numpy()
    threshold = ctx.thresholds.get(finding)
    if threshold is None and len(np.unique(y_all)) == 2:
        threshold = youden_threshold(y_all, score_all)
    # the halves are drawn on the classifier's images, so every model's space shares them
    half_all = patient_halves(patients_all, y_all, s.search.seed)
    rows_at = space.index.get_indexer(rows["image_id"])  # -1: not embedded by this model
    keep = np.flatnonzero(rows_at >= 0)
    y, score, patients, half = y_all[keep], score_all[keep], patients_all[keep], half_all[keep]
    ids = rows["image_id"].to_numpy()[keep]
    counts = {"n_images": len(y), "positives": int(y.sum()), "negatives": int(len(y) - y.sum()),
              "threshold": threshold}  # fmt: skip
    total = overall(ctx, space.model, finding, y, score, threshold)
    why = too_few(int(y.sum()), len(y), s.min_positives, "analysis.slices.min_positives")
    if not why and total["errors"] < s.min_errors:
        why = (f"too few errors: {total['errors']} at threshold {threshold:.4g}; a finding "
               f"needs {s.min_errors} (analysis.slices.min_errors)")  # fmt: skip
    if why:
        return [skipped(ctx, finding, space.model, why, **counts)], [], total
    at = rows_at[keep]
    found = mixture_slices(space.X[at], y, score, half, s.search)
    sc = Scorer.of(y, score, half, patients, threshold)
    results = scored(found, sc, s.search, s.alpha)
    rows_out = [] if results else [skipped(ctx, finding, space.model, (
        f"no mixture slice held {s.search.min_size} held-out images with "
        f"{s.search.score.min_class} of a class (analysis.slices.min_size, min_class)"),
        **counts)]  # fmt: skip
    results = [(f, m, name) for (f, m), name in zip(results, _names(results), strict=True)]
    results += [(f, m, f"c{c}") for f, m, c in cluster_rows(space.cluster[at], sc, s.search,
                                                              s.alpha)]  # fmt: skip
    describer = Describer.of(ctx.manifest.reindex(ids), ctx.findings, ctx.attributes, finding)
    members = []
    for f, m, name in results:
        row = {
            "classifier": ctx.classifier,
            "finding": finding,
            "model": space.model,
            "method": "cluster" if f is None else f.method,
            "slice": name,
            **m,
            "threshold": threshold,
            "status": SCORED,
            "reason": "",
            "cluster_name": space.names.get(name, "") if name.startswith("c") else "",
        }
        if f is not None:  # a slice with every number: what it is made of, its members
            part = describer.subset(np.flatnonzero(f.assessed))
            row["description"], row["attribute"] = part.describe(
                f.member[f.assessed], y[f.assessed]
            )
            row |= {"found_on": f.found_on, "drop": m["auroc_out"] - m["auroc_in"]}
            members.append(_members(ctx, space.model, finding, name, f, ids, y, score, half,
                                    threshold))  # fmt: skip
        rows_out.append(row)
    return rows_out, members, total


def _names(results: list[tuple[Found, dict]]) -> list[str]:
    """Mixture slices `s1`, `s2`, ... by AUROC drop (largest first)."""
    order = sorted(range(len(results)), key=lambda i: -np.nan_to_num(
        results[i][1]["auroc_out"] - results[i][1]["auroc_in"], nan=-9))  # fmt: skip
    names = {i: f"s{rank + 1}" for rank, i in enumerate(order)}
    return [names[i] for i in range(len(results))]


def _members(ctx, model, finding, name, f: Found, ids, y, score, half, threshold) -> pd.DataFrame:
    at = f.member & f.assessed
    return pd.DataFrame({
        "classifier": ctx.classifier, "finding": finding, "model": model, "slice": name,
        "image_id": ids[at], "label": y[at].astype(np.int8), "score": score[at],
        "error": (score[at] >= threshold) != (y[at] == 1), "typicality": f.typicality[at],
        "half": half[at],
    })  # fmt: skip


def slice_classifier(
    ctx: Context, space: Space, predictions: pd.DataFrame, s: SliceSettings
) -> SliceRun:
    """Every finding the classifier scores, in one model's space."""
    rows, members, totals = [], [], []
    for finding, sub in predictions.groupby("finding", sort=False):
        r, m, total = finding_slices(ctx, space, str(finding), sub, s)
        rows += r
        members += m
        totals.append(total)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    members = pd.concat(members, ignore_index=True) if members else pd.DataFrame(
        columns=MEMBER_COLUMNS)  # fmt: skip
    return SliceRun(table, members[MEMBER_COLUMNS], pd.DataFrame(totals, columns=FINDING_COLUMNS))


@dataclass(frozen=True)
class SpaceFiles:
    """A model's files a space is read from (each records its model: `io.by_model`)."""

    model: str
    embeddings: str
    reduced: str
    groups: str | None = None


def load_space(f: SpaceFiles, s: SliceSettings) -> Space:
    """A model's embeddings (PCA-reduced) and map clusters, in the embeddings' row order."""
    from cxratlas.io import read_cluster_names, read_embeddings

    ids, X, _ = read_embeddings(f.embeddings)
    index = pd.Index(ids)
    red = pd.read_parquet(f.reduced, columns=["image_id", "cluster"]).set_index("image_id")
    cluster = red["cluster"].reindex(index).fillna(-1).to_numpy(np.int64)
    names = read_cluster_names(f.groups) if f.groups else {}
    return Space(f.model, index, pca_space(X, s.pca, s.search.seed), cluster, names)


def slice_models(
    ctx: Context, files: list[SpaceFiles], predictions: pd.DataFrame, s: SliceSettings
) -> SliceRun:
    """One classifier in every model's space, one space in memory at a time."""
    runs = [slice_classifier(ctx, load_space(f, s), predictions, s) for f in files]
    return SliceRun(*(pd.concat([getattr(r, k) for r in runs], ignore_index=True)
                      for k in ("table", "members", "findings")))  # fmt: skip


def load_context(classifier: str, manifest_path: str, thresholds) -> Context:
    from cxratlas.io import read_manifest

    manifest, columns = read_manifest(manifest_path)
    return Context(classifier, manifest.set_index("image_id"), list(columns.findings),
                   columns.attributes, thresholds)  # fmt: skip
