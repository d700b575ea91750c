"""Linear probes: how well each model's frozen embeddings classify one finding.

Per finding and model: standardised embeddings -> logistic regression, evaluated by k-fold
cross-validation with patient-level folds (no patient on both sides of a split), AUROC on the
pooled out-of-fold scores, and a 95% CI from a patient-level (cluster) bootstrap. Uncertain
labels (-1) are left out by default (CheXpert's "U-Ignore"); missing labels always are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.analysis.metrics import WEIGHTED, auroc

log = logging.getLogger(__name__)


def patient_folds(groups: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index per row; every patient's rows share one fold, positives spread evenly."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold = np.empty(len(y), np.int64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        fold[test] = i
    return fold


def max_folds(y: np.ndarray, groups: np.ndarray, folds: int) -> int:
    """Folds such that every training split holds every class: at most the number of distinct
    patients of the rarest class (one ICU patient with 12 films is one patient, not 12)."""
    classes = np.unique(y)
    per_class = [len(np.unique(groups[y == c])) for c in classes]
    return min([folds, *per_class]) if len(classes) > 1 else 0


def oof_scores(X: np.ndarray, y: np.ndarray, fold: np.ndarray, C: float = 1.0) -> np.ndarray:
    """Out-of-fold decision scores of a standardised logistic-regression probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    score = np.empty(len(y), np.float64)
    for f in np.unique(fold):
        test = fold == f
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        model.fit(X[~test], y[~test])
        score[test] = model.decision_function(X[test])
    return score


def patient_bootstrap_ci(
    y: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    bootstrap: int,
    seed: int,
    metric=None,
) -> tuple[float, float]:
    """95% CI of `metric(y, score)` (default AUROC; one of `metrics.WEIGHTED`), resampling
    patients (all of a patient's images together); resamples where the metric is undefined are
    left out. Each resample is a row of draw counts, and blocks of them are scored at once."""
    weighted = WEIGHTED[metric or auroc]
    boots = np.concatenate([np.empty(0)] + [
        weighted(y, score, w) for w in resample_weights(groups, bootstrap, seed)
    ])  # fmt: skip
    boots = boots[~np.isnan(boots)]
    low, high = np.percentile(boots, [2.5, 97.5]) if len(boots) else (np.nan, np.nan)
    return float(low), float(high)


def resample_weights(groups: np.ndarray, bootstrap: int, seed: int, cells: int = 2**22):
    """Blocks of patient-bootstrap resamples (at most `cells` numbers each): a row per resample,
    how often each image was drawn, its patient drawn with replacement as often as there are
    patients. The draws are those of drawing the resamples one at a time."""
    rng = np.random.default_rng(seed)
    patients, inverse = np.unique(groups, return_inverse=True)
    n = len(patients)
    block = max(1, cells // max(n, len(inverse)))
    for start in range(0, bootstrap, block):
        rows = min(block, bootstrap - start)
        draws = rng.integers(0, n, (rows, n)) + n * np.arange(rows)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        yield counts[:, inverse]


def probe_scores(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0, C: float = 1.0
) -> tuple[np.ndarray | None, int]:
    """(out-of-fold scores, folds) of a logistic-regression probe on patient-level folds; the
    scores are None where fewer than two folds keep every class in training."""
    y = np.asarray(y, np.int64)
    folds = max_folds(y, np.asarray(groups), folds)
    if folds < 2:
        return None, folds
    return oof_scores(X, y, patient_folds(groups, y, folds, seed), C), folds


def probe_auroc(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: int = 5,
    bootstrap: int = 1000,
    seed: int = 0,
    C: float = 1.0,
) -> dict[str, float]:
    """Out-of-fold AUROC of a logistic-regression probe, with a patient-bootstrap 95% CI."""
    score, folds = probe_scores(X, y, groups, folds, seed, C)
    if score is None:
        return {"auroc": np.nan, "ci_low": np.nan, "ci_high": np.nan, "folds": folds}
    low, high = patient_bootstrap_ci(y, score, groups, bootstrap, seed)
    return {"auroc": auroc(y, score), "ci_low": low, "ci_high": high, "folds": folds}


def patient_groups(manifest: pd.DataFrame, ids: pd.Index) -> pd.Series:
    """Patient id per image (as strings) for `ids`; without patient ids each image is its own."""
    groups = manifest.get("patient_id", pd.Series(manifest.index, index=manifest.index))
    return groups.reindex(ids).astype(str)


@dataclass(frozen=True)
class LabelPolicy:
    """How a finding's 1 / 0 / -1 / blank labels become 0 / 1 (`analysis.probes.uncertain` and
    `.missing`). Blank is "not mentioned" in CheXpert and MIMIC-CXR: unknown by default, or
    absent (`missing: negative`, the CheXpert competition's reading), which "No Finding" needs:
    it is 1 or blank, never 0."""

    uncertain: str = "ignore"  # -1: ignore | positive | negative
    missing: str = "ignore"  # blank: ignore | negative

    @classmethod
    def from_probes(cls, probes: dict[str, Any]) -> LabelPolicy:
        return cls(probes["uncertain"], probes.get("missing", "ignore"))

    def hint(self, manifest: pd.DataFrame, finding: str, ids: pd.Index) -> str:
        """Why a class may be empty: the blank labels left unknown, where there are any."""
        blank = int(manifest[finding].reindex(ids).isna().sum())
        if self.missing != "ignore" or not blank:
            return ""
        return (f"; its {blank} blank label(s) are unknown (analysis.probes.missing: negative "
                f"reads them as negatives)")  # fmt: skip


KNOWN_ONLY = LabelPolicy()  # the default: -1 and blank labels dropped


def finding_labels(
    manifest: pd.DataFrame, finding: str, policy: LabelPolicy = KNOWN_ONLY
) -> pd.Series:
    """0/1 labels for `finding` (index image_id); -1 and blank as `policy` says (dropped,
    or read as 1 or 0)."""
    values = manifest[finding].astype("Int8")
    if policy.missing == "negative":
        values = values.fillna(0)
    if policy.uncertain == "positive":
        values = values.replace(-1, 1)
    elif policy.uncertain == "negative":
        values = values.replace(-1, 0)
    return values[values.isin([0, 1])].astype(np.int64)


@dataclass(frozen=True)
class ProbeSettings:
    """`analysis.probes` (and `analysis.seed`), built once."""

    folds: int = 5  # patient-level cross-validation folds
    bootstrap: int = 1000  # patient bootstrap resamples for the 95% CI
    min_positives: int = 10  # findings with fewer positives (or negatives) are skipped
    labels: LabelPolicy = KNOWN_ONLY  # -1 and blank labels
    seed: int = 0

    @classmethod
    def from_config(cls, analysis: dict[str, Any]) -> ProbeSettings:
        p = analysis["probes"]
        fields = ("folds", "bootstrap", "min_positives")
        return cls(**{k: p[k] for k in fields}, labels=LabelPolicy.from_probes(p),
                   seed=analysis["seed"])  # fmt: skip


COLUMNS = ["finding", "model", "n", "positives", "patients", "auroc", "ci_low", "ci_high", "folds",
           "status", "reason"]  # fmt: skip
SCORED, SKIPPED = "scored", "skipped"  # `status` of a row: a skipped row says why in `reason`


def too_few(positives: int, n: int, min_count: int, key: str = "analysis.probes.min_positives"):
    """Why a finding with `positives` of `n` labelled images cannot be scored, or "" if it can:
    the reason that its skipped row in a table (and the report) carries."""
    negatives = n - positives
    if min(positives, negatives) >= min_count:
        return ""
    return (f"too few to score: {positives} positive and {negatives} negative image(s); "
            f"each class needs {min_count} ({key})")  # fmt: skip


def skipped_rows(finding: str, models, n: int, positives: int, reason: str, **extra) -> list:
    """One skipped row per model, with the counts and the reason, where its scores would be."""
    return [{"finding": finding, "model": m, "n": n, "positives": positives, "status": SKIPPED,
             "reason": reason, **extra} for m in models]  # fmt: skip


def common_embeddings(embeddings: dict[str, str]) -> tuple[dict[str, tuple], pd.Index]:
    """Every model's (ids, matrix, meta), and the image ids all of them embedded, sorted: the
    files' row order is their shards' history, and folds drawn over it would make the same
    images score differently after the archive was re-exported."""
    from cxratlas.io import read_embeddings

    loaded = {m: read_embeddings(p) for m, p in embeddings.items()}
    common = None
    for ids, _, _ in loaded.values():
        common = pd.Index(ids) if common is None else common.intersection(ids, sort=False)
    return loaded, common.sort_values()


SCORE_COLUMNS = ["finding", "model", "image_id", "label", "score", "fold"]


@dataclass
class ProbeRun:
    """The probes' table (one row per finding and model) and every probe's out-of-fold scores
    (`SCORE_COLUMNS`: one row per finding, model and image), which the paired model
    comparison and, as a classifier of their own, the error slices read."""

    table: pd.DataFrame
    scores: pd.DataFrame


def run_probes(
    embeddings: dict[str, str],
    manifest_path: str,
    findings: list[str] | None = None,
    settings: ProbeSettings | None = None,
    shuffle_labels: bool = False,
) -> ProbeRun:
    """One row per (finding, model), and the scores behind it. Every model's probe of a
    finding sees the same images, labels and patient folds, so two models' scores pair image
    by image. `shuffle_labels` permutes labels across patients: the chance-level control."""
    from cxratlas.io import read_manifest

    s = settings or ProbeSettings()
    manifest, columns = read_manifest(manifest_path)
    manifest = manifest.set_index("image_id")
    findings = list(columns.findings) if findings is None else findings
    missing = [f for f in findings if f not in manifest.columns]
    if missing:
        raise KeyError(f"analysis.probes.findings {missing} are not manifest columns")
    loaded, common = common_embeddings(embeddings)
    if "patient_id" not in manifest:
        log.warning("no patient_id column: folds split images, not patients (optimistic AUROC)")
    rows, scores = [], []
    for finding in findings:
        labels = finding_labels(manifest, finding, s.labels).reindex(common).dropna()
        n_pos = int(labels.sum())
        groups = patient_groups(manifest, labels.index)
        why = too_few(n_pos, len(labels), s.min_positives)
        why += s.labels.hint(manifest, finding, common) if why else ""
        if why:
            log.warning("probe %s skipped: %s", finding, why)
            rows += skipped_rows(finding, loaded, len(labels), n_pos, why,
                                 patients=int(groups.nunique()))  # fmt: skip
            continue
        y = labels.to_numpy()
        if shuffle_labels:
            y = np.random.default_rng(s.seed).permutation(y)
        g = groups.to_numpy()
        fold = patient_folds(g, y, max_folds(y, g, s.folds), s.seed)
        for m, (ids, X, _) in loaded.items():
            score = oof_scores(X[pd.Index(ids).get_indexer(labels.index)], y, fold)
            low, high = patient_bootstrap_ci(y, score, g, s.bootstrap, s.seed)
            result = {"auroc": auroc(y, score), "ci_low": low, "ci_high": high,
                      "folds": int(fold.max()) + 1}  # fmt: skip
            rows.append({"finding": finding, "model": m, "n": len(y), "positives": int(y.sum()),
                         "patients": int(groups.nunique()), **result, "status": SCORED,
                         "reason": ""})  # fmt: skip
            scores.append(pd.DataFrame({"finding": finding, "model": m, "image_id": labels.index,
                                        "label": y.astype(np.int8), "score": score,
                                        "fold": fold}))  # fmt: skip
            log.info("probe %s / %s: AUROC %.3f (%.3f-%.3f)", finding, m, result["auroc"],
                     result["ci_low"], result["ci_high"])  # fmt: skip
    scores = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(columns=SCORE_COLUMNS)
    return ProbeRun(pd.DataFrame(rows, columns=COLUMNS), scores[SCORE_COLUMNS])
