"""One classifier in every model's space: every finding's slices, scored and described.

`slice_models` is the job `rules/slices.smk` runs per classifier: each model's space in turn
(`slice_classifier`): its embeddings reduced by PCA once, then per finding the mixture slices
(`search`) and the map's clusters, scored on held-out images, each row with its reason where a
finding cannot be searched. The p-values are adjusted across the classifier's findings and
models afterwards (`across`), where the recurrence across models is found too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.slices.describe import Describer
from cxratlas.slices.mixture import MixtureSettings
from cxratlas.slices.score import ScoreSettings, wrong_at, youden_threshold
from cxratlas.slices.search import (
    ATTRIBUTE,
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
NO_SCORES = ("no image labelled 1 or 0 has a score: a probe skips a finding with too few "
             "positives or negatives (analysis/probes/probes.parquet says why)")  # fmt: skip
PCA_FIT_MAX = 20000  # images the PCA is fitted on (then applied to all)


@dataclass(frozen=True)
class SliceSettings:
    """What a classifier's job (the search) reads of `analysis.slices` (and `analysis.seed`),
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


def pca_space(X: np.ndarray, components: int | None, seed: int, block: int = 100_000):
    """L2-normalised embeddings (the maps are cosine) reduced by PCA fitted on a seeded
    subsample, in float32 (the mixture's products; its sums are float64). A block of rows at a
    time, so a million-row matrix is not copied whole."""
    from sklearn.decomposition import PCA

    k = min(components or X.shape[1], X.shape[1], max(1, len(X) - 1))
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(len(X), min(len(X), PCA_FIT_MAX), replace=False))
    pca = None if k >= X.shape[1] else PCA(k, svd_solver="randomized", random_state=seed).fit(
        _unit(X[sub]))  # fmt: skip
    out = np.empty((len(X), k), np.float32)
    for start in range(0, len(X), block):
        rows = _unit(X[start : start + block])
        out[start : start + block] = rows if pca is None else pca.transform(rows)
    return out


def _unit(X: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    return X / np.maximum(norms, 1e-12)[:, None].astype(X.dtype)


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
    thresholds: dict[str, float | None]  # every finding the classifier scores: its threshold

    @cached_property
    def groups(self) -> pd.DataFrame:
        """Each image's subgroup columns (site, view, sex, age band, ...; NA unknown): every
        value is a candidate slice in every finding (`attribute_rows`)."""
        from cxratlas.subgroups import subgroup_frame

        return subgroup_frame(self.manifest, self.attributes)


def skipped(ctx: Context, finding: str, model: str, reason: str, **counts) -> dict:
    log.warning("slices %s / %s / %s skipped: %s", ctx.classifier, finding, model, reason)
    return {"classifier": ctx.classifier, "finding": finding, "model": model, "slice": "",
            "status": SKIPPED, "reason": reason, **counts}  # fmt: skip


def overall(ctx: Context, model: str, finding: str, y, score, threshold) -> dict:
    """The classifier on all of a finding's images in this space: what slices are measured by."""
    from cxratlas.analysis.metrics import auroc

    wrong = wrong_at(y, score, threshold)
    fn, fp = int((wrong & (y == 1)).sum()), int((wrong & (y != 1)).sum())
    return {"classifier": ctx.classifier, "finding": finding, "model": model,
            "n_images": len(y), "positives": int(y.sum()), "negatives": int(len(y) - y.sum()),
            "threshold": threshold, "auroc": auroc(y, score) if len(y) else np.nan,
            "errors": fn + fp, "fn": fn, "fp": fp}  # fmt: skip


@dataclass
class Labelled:
    """One finding's images of the classifier that this model embedded, in the table's order:
    labels, scores, patients, the half of the patients each falls in, and their rows in the
    space."""

    ids: np.ndarray
    y: np.ndarray
    score: np.ndarray
    patients: np.ndarray
    half: np.ndarray
    at: np.ndarray
    threshold: float | None

    @classmethod
    def of(cls, ctx: Context, space: Space, finding: str, rows: pd.DataFrame, seed: int):
        from cxratlas.analysis.probes import patient_groups

        y, score = rows["label"].to_numpy(np.int64), rows["score"].to_numpy(np.float64)
        patients = patient_groups(ctx.manifest, pd.Index(rows["image_id"])).to_numpy()
        threshold = ctx.thresholds.get(finding)
        if threshold is None and len(np.unique(y)) == 2:
            threshold = youden_threshold(y, score)
        # the halves are drawn on all the classifier's images: every model's space shares them
        half = patient_halves(patients, y, seed)
        at = space.index.get_indexer(rows["image_id"])  # -1: not embedded by this model
        keep = at >= 0
        return cls(rows["image_id"].to_numpy()[keep], y[keep], score[keep], patients[keep],
                   half[keep], at[keep], threshold)  # fmt: skip

    @property
    def counts(self) -> dict:
        n, pos = len(self.y), int(self.y.sum())
        return {"n_images": n, "positives": pos, "negatives": n - pos,
                "threshold": self.threshold}  # fmt: skip


def _why_not(d: Labelled, total: dict, s: SliceSettings) -> str:
    """Why a finding cannot be searched (too few positives, negatives or errors), or ""."""
    from cxratlas.analysis.probes import too_few

    why = too_few(int(d.y.sum()), len(d.y), s.min_positives, "analysis.slices.min_positives")
    if not why and total["errors"] < s.min_errors:
        why = (f"too few errors: {total['errors']} at threshold {d.threshold:.4g}; a finding "
               f"needs {s.min_errors} (analysis.slices.min_errors)")  # fmt: skip
    return why


def finding_slices(
    ctx: Context, space: Space, finding: str, rows: pd.DataFrame, s: SliceSettings
) -> tuple[list[dict], list[pd.DataFrame], dict]:
    """One finding's slices in one space: table rows, members and the overall numbers
    (`rows`: the classifier's labelled images of this finding)."""
    d = Labelled.of(ctx, space, finding, rows, s.search.seed)
    total = overall(ctx, space.model, finding, d.y, d.score, d.threshold)
    why = NO_SCORES if rows.empty else _why_not(d, total, s)
    if why:
        return [skipped(ctx, finding, space.model, why, **d.counts)], [], total
    sc = Scorer.of(d.y, d.score, d.half, d.patients, d.threshold)
    results = scored(mixture_slices(space.X[d.at], d.y, d.score, d.half, s.search), sc,
                     s.search, s.alpha)  # fmt: skip
    rows_out = [] if results else [skipped(ctx, finding, space.model, (
        f"no mixture slice held {s.search.min_size} held-out images with "
        f"{s.search.score.min_class} of a class (analysis.slices.min_size, min_class)"),
        **d.counts)]  # fmt: skip
    results = [(f, m, name, "mixture")
               for (f, m), name in zip(results, _names(results), strict=True)]  # fmt: skip
    results += [(f, m, f"c{c}", "cluster") for f, m, c in cluster_rows(
        space.cluster[d.at], sc, s.search, s.alpha)]  # fmt: skip
    results += attribute_rows(ctx.groups.reindex(d.ids), sc, s)
    describer = Describer.of(ctx.manifest.reindex(d.ids), ctx.findings, ctx.attributes, finding)
    members = []
    for f, m, name, method in results:
        rows_out.append(_row(ctx, space, finding, name, method, f, m, d, describer))
        if f is not None:
            members.append(_members(ctx, space.model, finding, name, f, d))
    return rows_out, members, total


def attribute_rows(groups: pd.DataFrame, sc: Scorer, s: SliceSettings) -> list:
    """(slice or None, numbers, "column=value", "attribute") per value of each subgroup column
    (`groups`: a row per image of the finding, NA unknown), tested as the map's clusters are."""
    out = []
    for column in groups.columns:
        codes, values = pd.factorize(groups[column])  # NA: -1, left out
        out += [(f, m, f"{column}={values[c]}", "attribute") for f, m, c in cluster_rows(
            codes, sc, s.search, s.alpha, found_on=ATTRIBUTE)]  # fmt: skip
    return out


def _row(ctx, space, finding, name, method, f: Found | None, m: dict, d: Labelled,
         describer) -> dict:  # fmt: skip
    """A slice's table row; a slice with every number (`f`) is described too."""
    row = {"classifier": ctx.classifier, "finding": finding, "model": space.model,
           "method": method, "slice": name, **m, "threshold": d.threshold, "status": SCORED,
           "reason": "",
           "cluster_name": space.names.get(name, "") if method == "cluster" else ""}  # fmt: skip
    if f is not None:
        part = describer.subset(np.flatnonzero(f.assessed))
        row["description"], row["attribute"] = part.describe(f.member[f.assessed],
                                                             d.y[f.assessed])  # fmt: skip
        row |= {"found_on": f.found_on, "drop": m["auroc_out"] - m["auroc_in"]}
    return row


def _names(results: list[tuple[Found, dict]]) -> list[str]:
    """Mixture slices `s1`, `s2`, ... by AUROC drop (largest first)."""
    order = sorted(range(len(results)), key=lambda i: -np.nan_to_num(
        results[i][1]["auroc_out"] - results[i][1]["auroc_in"], nan=-9))  # fmt: skip
    names = {i: f"s{rank + 1}" for rank, i in enumerate(order)}
    return [names[i] for i in range(len(results))]


def _members(ctx, model, finding, name, f: Found, d: Labelled) -> pd.DataFrame:
    at = f.member & f.assessed
    return pd.DataFrame({
        "classifier": ctx.classifier, "finding": finding, "model": model, "slice": name,
        "image_id": d.ids[at], "label": d.y[at].astype(np.int8), "score": d.score[at],
        "error": wrong_at(d.y[at], d.score[at], d.threshold), "typicality": f.typicality[at],
        "half": d.half[at],
    })  # fmt: skip


def slice_classifier(
    ctx: Context, space: Space, predictions: pd.DataFrame, s: SliceSettings, threads: int = 0
) -> SliceRun:
    """Every finding the classifier scores, in one model's space: the findings on `threads`
    threads (0: as many as the process may use cores; NumPy's products and sorts release the
    GIL, and BLAS keeps to one core a thread, so they do not fight over them). The result does
    not depend on how many run at once: each finding draws from its own seeds."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    # every finding the classifier should score has its row, scored or not (`thresholds`)
    findings = dict.fromkeys([*ctx.thresholds, *predictions["finding"].astype(str).unique()])
    groups = [(f, predictions[predictions["finding"] == f]) for f in findings]
    workers = max(1, min(len(groups), threads or len(os.sched_getaffinity(0))))
    with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(lambda g: finding_slices(ctx, space, g[0], g[1], s), groups))
    rows, members, totals = [], [], []
    for r, m, total in done:
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
    ctx: Context,
    files: list[SpaceFiles],
    predictions: pd.DataFrame,
    s: SliceSettings,
    threads: int = 0,
) -> SliceRun:
    """One classifier in every model's space, one space in memory at a time."""
    runs = [slice_classifier(ctx, load_space(f, s), predictions, s, threads) for f in files]
    return SliceRun(*(pd.concat([getattr(r, k) for r in runs], ignore_index=True)
                      for k in ("table", "members", "findings")))  # fmt: skip


def load_context(classifier: str, manifest_path: str, thresholds) -> Context:
    from cxratlas.io import read_manifest

    manifest, columns = read_manifest(manifest_path)
    return Context(classifier, manifest.set_index("image_id"), list(columns.findings),
                   columns.attributes, thresholds)  # fmt: skip
