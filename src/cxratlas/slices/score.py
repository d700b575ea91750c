"""How a classifier does inside a slice against outside it, and whether the difference is real.

- AUROC inside against outside, with patient-bootstrap CIs. A slice of one class (drains sit
  in pneumothorax positives) has no AUROC of its own, so its positives are scored against all
  negatives outside it (BNSP), or its negatives against all positives outside it (BPSN): the
  nuanced AUCs of Borkan et al. 2019. A slice is reported by the lowest of the three it has
  (`worst_metric`): a slice whose scores are all shifted down ranks well within itself, and
  fails in its BNSP.
- False negatives and positives at the classifier's threshold (`youden_threshold` by default).
- The test: each image's rank loss (a positive's share of negatives scored above it, a
  negative's share of positives scored below it; over a class they average 1 - AUROC), ranked
  within each class, and the slice's rank sum against what as many images of each class would
  hold at random (van Elteren's stratified rank-sum test, one-sided). Stratifying by class
  matters: a slice of positives is not worse for being positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from cxratlas.analysis.metrics import auroc
from cxratlas.analysis.probes import patient_bootstrap_ci


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score that maximises sensitivity + specificity - 1 (a positive call: score >= it)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, score)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], np.max(score)))


def wrong_at(y: np.ndarray, score: np.ndarray, threshold: float | None) -> np.ndarray:
    """Which images the classifier gets wrong when it calls positive at score >= threshold
    (without a threshold it calls nothing, so every positive is missed)."""
    called = np.asarray(score) >= threshold if threshold is not None else np.zeros(len(y), bool)
    return called != (np.asarray(y) == 1)


def stratum_ranks(loss: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Each image's loss as its mid-rank within its stratum over (stratum size + 1): van
    Elteren's scores, near uniform, so a slice's sum is near normal even for a few images,
    where the skewed losses themselves are not."""
    from scipy.stats import rankdata

    out = np.empty(len(loss))
    for stratum in np.unique(strata):
        at = strata == stratum
        out[at] = rankdata(loss[at]) / (int(at.sum()) + 1)
    return out


def grouped_test(values: np.ndarray, group: np.ndarray, strata: np.ndarray, groups: int):
    """(z, one-sided p) per group 0..groups-1 (-1: in none) that its images' values
    (`stratum_ranks`) exceed what as many images of each stratum would hold at random: van
    Elteren's stratified rank-sum test, every group at once (sums by group and stratum)."""
    _, stratum = np.unique(strata, return_inverse=True)
    total = np.zeros(groups)
    expected, variance = np.zeros(groups), np.zeros(groups)
    inside = group >= 0
    for st in range(stratum.max() + 1 if len(stratum) else 0):
        at = stratum == st
        v, n = values[at], int(at.sum())
        pick = inside & at
        m = np.bincount(group[pick], minlength=groups).astype(float)
        total += np.bincount(group[pick], weights=values[pick], minlength=groups)
        expected += m * v.mean()
        if n > 1:
            variance += m * (n - m) / (n - 1) * v.var()
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(variance > 0, (total - expected) / np.sqrt(variance), np.nan)
    return z, norm.sf(z)


@dataclass(frozen=True)
class ScoreSettings:
    bootstrap: int = 500  # patient resamples for the CI of the AUROC inside
    min_class: int = 5  # images of a class a slice needs for that class's metric
    ci_background: int = 5000  # images outside a slice its BNSP / BPSN bootstrap resamples
    seed: int = 0


def _ci_rows(rows: np.ndarray, member: np.ndarray, most: int, seed: int) -> np.ndarray:
    """The rows a metric's bootstrap resamples: the slice's, and at most `most` seeded rows of
    the images outside it. A resample costs its rows, and BNSP and BPSN pair a slice with every
    image of a class outside it; fewer of those widen the CI a little (conservative), where
    their number hardly moves it."""
    outside = np.flatnonzero(rows & ~member)
    if len(outside) <= most:
        return rows
    keep = rows & member
    keep[np.random.default_rng(seed).choice(outside, most, replace=False)] = True
    return keep


@dataclass
class Ranking:
    """A classifier's scores over the images slices are assessed on, ranked once: per image
    how many of the other class it beats (a positive: negatives scored below it; a negative:
    positives scored above it; ties half). A slice's own AUROC, BNSP, BPSN and the AUROC
    outside it then cost the slice's images, not the whole set's (`aucs`)."""

    y: np.ndarray  # bool
    score: np.ndarray
    patients: np.ndarray
    error: np.ndarray  # wrong at the threshold
    beaten: np.ndarray

    @classmethod
    def of(cls, y, score, patients, threshold: float) -> Ranking:
        y = np.asarray(y).astype(bool)
        s = np.asarray(score, np.float64)
        neg, pos = np.sort(s[~y]), np.sort(s[y])
        beaten = np.zeros(len(s))
        left, right = np.searchsorted(neg, s[y], "left"), np.searchsorted(neg, s[y], "right")
        beaten[y] = 0.5 * (left + right)
        left, right = np.searchsorted(pos, s[~y], "left"), np.searchsorted(pos, s[~y], "right")
        beaten[~y] = len(pos) - 0.5 * (left + right)
        return cls(y, s, np.asarray(patients), wrong_at(y, s, threshold), beaten)

    @property
    def loss(self) -> np.ndarray:
        """`rank_loss`: the share of the other class an image loses to."""
        n_pos, n_neg = int(self.y.sum()), int((~self.y).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            out = 1 - self.beaten / np.where(self.y, n_neg, n_pos)
        return np.nan_to_num(out)

    def aucs(self, member: np.ndarray) -> dict[str, float]:
        """The slice's own AUROC, BNSP (its positives against the negatives outside), BPSN (its
        negatives against the positives outside) and the AUROC outside it; NaN where a side
        is empty."""
        y, b = self.y, self.beaten
        p_in, n_in = int((member & y).sum()), int((member & ~y).sum())
        p_out, n_out = int(y.sum()) - p_in, int((~y).sum()) - n_in
        own = auroc(y[member], self.score[member]) if p_in and n_in else np.nan
        u_in = 0.0 if np.isnan(own) else own * p_in * n_in
        cross_pos = float(b[member & y].sum()) - u_in  # slice positives over outside negatives
        cross_neg = float(b[member & ~y].sum()) - u_in  # outside positives over slice negatives
        u_out = float(b[y].sum()) - u_in - cross_pos - cross_neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"auroc": own, "bnsp": cross_pos / (p_in * n_out) if p_in * n_out else np.nan,
                    "bpsn": cross_neg / (n_in * p_out) if n_in * p_out else np.nan,
                    "out": u_out / (p_out * n_out) if p_out * n_out else np.nan}  # fmt: skip


def _metric_rows(metric: str, y: np.ndarray, member: np.ndarray) -> np.ndarray:
    """The images a metric pairs: the slice (auroc), its positives and the negatives outside
    (bnsp), its negatives and the positives outside (bpsn)."""
    if metric == "auroc":
        return member
    own, other = (y, ~y) if metric == "bnsp" else (~y, y)
    return (member & own) | (~member & other)


def worst_metric(aucs: dict[str, float], y: np.ndarray, member: np.ndarray, min_class: int):
    """The slice's lowest metric among those it has images for (`min_class` of the slice's
    images of the class(es) a metric pairs): where its own ranking, its positives or its
    negatives fail, the failure the test found shows (Borkan et al. report all three)."""
    pos, neg = int((member & y).sum()), int((member & ~y).sum())
    have = {"auroc": pos >= min_class and neg >= min_class, "bnsp": pos >= min_class,
            "bpsn": neg >= min_class}  # fmt: skip
    named = [m for m, ok in have.items() if ok and np.isfinite(aucs[m])]
    return min(named, key=lambda m: aucs[m]) if named else None


def slice_metrics(r: Ranking, member: np.ndarray, s: ScoreSettings, ci: bool = True) -> dict | None:
    """The numbers of one slice over the images it is assessed on (`member` marks it among
    them); None where neither class has `min_class` images in it. `ci`: with the
    patient-bootstrap CI of its metric (what the slices that can be flagged need)."""
    aucs = r.aucs(member)
    metric = worst_metric(aucs, r.y, member, s.min_class)
    if metric is None:
        return None
    low = high = np.nan
    if ci and s.bootstrap:
        boot = _ci_rows(_metric_rows(metric, r.y, member), member, s.ci_background, s.seed)
        low, high = patient_bootstrap_ci(r.y[boot].astype(int), r.score[boot], r.patients[boot],
                                         s.bootstrap, s.seed)  # fmt: skip
    return {
        "n_images": int(member.sum()),
        "n_patients": int(len(np.unique(r.patients[member]))),
        "positives": int((member & r.y).sum()),
        "negatives": int((member & ~r.y).sum()),
        "metric": metric,
        "auroc_in": aucs[metric],
        "auroc_in_low": low,
        "auroc_in_high": high,
        "auroc_out": aucs["out"],
        "bnsp": aucs["bnsp"],
        "bpsn": aucs["bpsn"],
        **error_counts(r, member),
    }


def error_counts(r: Ranking, member: np.ndarray) -> dict:
    """False negatives and positives inside, error rates inside and outside, the lift over the
    overall rate and the share of all errors the slice holds."""
    err, n_err = r.error, int(r.error.sum())
    rate_in, rate_all = float(err[member].mean()), float(err.mean())
    return {"fn": int((member & r.y & err).sum()), "fp": int((member & ~r.y & err).sum()),
            "error_rate_in": rate_in,
            "error_rate_out": float(err[~member].mean()) if (~member).any() else np.nan,
            "error_lift": rate_in / rate_all if rate_all else np.nan,
            "error_share": float(err[member].sum() / n_err) if n_err else np.nan}  # fmt: skip
