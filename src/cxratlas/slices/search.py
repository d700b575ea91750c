"""The search for one classifier, finding and model, honest about its own selection.

A mixture picks its components for their errors, so a slice tested on the images that found it
is significant by construction. Here the patients are split in two halves (seeded, the same
halves in every model's space): the mixture is fitted on one half, its most error-prone
components are kept, and each is tested on the other half, where images join it by their
embedding and label alone (`Mixture.assign`), never their score. Then the halves swap. A slice
found on both halves (their memberships over all images overlap by `merge_jaccard` or more) is
one slice whose every image was placed by the fit on the other half; a slice found on one half
only is assessed on the other half alone.

The map's own clusters are scored the same way, on every image, all at once (`cluster_rows`):
nothing chose them for their errors. So is each value of the manifest's subgroup columns (site,
dataset, view, sex, age band, vendor, ...): a failure that follows a site is found whether or
not any model's space gathers that site.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cxratlas.slices.mixture import MixtureSettings, calibrated, fit_mixture, slice_components
from cxratlas.slices.score import (
    Ranking,
    ScoreSettings,
    grouped_test,
    slice_metrics,
    stratum_ranks,
)

MAX_SHARE = 0.5  # a "slice" of more than half the images is the background of the rest

MAP, ATTRIBUTE = "map cluster", "manifest value"  # `found_on` of slices nothing chose


def _sized(n: int, of: int, s: SearchSettings, found_on: str = "") -> bool:
    """Whether `n` of `of` assessed images make a slice: `min_size` of them, at most half (a
    manifest value may hold more, a site with 60 % of the images: `min_size` stay outside)."""
    if found_on == ATTRIBUTE:
        return s.min_size <= n <= of - s.min_size
    return s.min_size <= n <= MAX_SHARE * of


@dataclass(frozen=True)
class SearchSettings:
    mixture: MixtureSettings = field(default_factory=MixtureSettings)
    score: ScoreSettings = field(default_factory=ScoreSettings)
    slices: int = 5  # components kept per half (Domino: 5)
    fit_max: int = 10000  # images of a half the mixture is fitted on (a seeded subsample)
    min_size: int = 10  # held-out images a slice needs
    merge_jaccard: float = 0.5  # a slice found on both halves is one slice
    seed: int = 0


@dataclass
class Found:
    """A slice over the finding's labelled images: its members, the images it is assessed on,
    each member's typicality (its responsibility under the fit that placed it)."""

    method: str  # mixture | cluster | attribute
    member: np.ndarray
    assessed: np.ndarray
    typicality: np.ndarray
    found_on: str  # "both halves", "half 1", "half 2", MAP, ATTRIBUTE
    cluster: int = -1


def patient_halves(patients: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """1 or 2 per image: two seeded halves of the patients, those with a positive image and
    those without shared out alike (every patient's images on one side)."""
    ids, inverse = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    positive = np.bincount(inverse, weights=np.asarray(y, float), minlength=len(ids)) > 0
    key = np.random.default_rng(seed).random(len(ids))
    half = np.empty(len(ids), np.int8)
    for cls in (False, True):  # alternate within each kind of patient, in a seeded order
        own = np.flatnonzero(positive == cls)
        half[own[np.argsort(key[own])]] = 1 + np.arange(len(own)) % 2
    return half[inverse]


def _fit_half(X, y, yhat, rows: np.ndarray, s: SearchSettings, seed: int):
    """The mixture on one half (a seeded subsample past `fit_max`), its slice components, and
    every image's component and responsibility by embedding and label."""
    rng = np.random.default_rng(seed)
    if len(rows) > s.fit_max:
        rows = np.sort(rng.choice(rows, s.fit_max, replace=False))
    # components the half can fill: Domino's 25 where it can, about 2 * min_size images each
    k = min(s.mixture.components, max(4, len(rows) // (2 * s.min_size)))
    model = fit_mixture(X[rows], y[rows], yhat[rows], replace(s.mixture, components=k), seed)
    comps = slice_components(model, len(rows), s.slices, s.min_size)
    component, resp = model.assign(X, y)
    return comps, component, resp


def mixture_slices(
    X: np.ndarray, y: np.ndarray, score: np.ndarray, half: np.ndarray, s: SearchSettings
) -> list[Found]:
    """Slices found on one half and placed on the other, merged where both halves found them."""
    yhat = calibrated(y, score)
    fits = {}
    for h in (1, 2):
        rows = np.flatnonzero(half == h)
        if len(rows) >= 2 * s.min_size and len(np.unique(y[rows])) == 2:
            fits[h] = _fit_half(X, y, yhat, rows, s, s.seed + h)
    candidates = {(h, int(k)): comp == k for h, (comps, comp, _) in fits.items() for k in comps}
    pairs = sorted(((_jaccard(candidates[a], candidates[b]), a, b)
                    for a in candidates if a[0] == 1 for b in candidates if b[0] == 2),
                   reverse=True)  # fmt: skip
    used, out = set(), []
    for j, a, b in pairs:
        if j >= s.merge_jaccard and a not in used and b not in used:
            used |= {a, b}
            out.append(_merged([a, b], candidates, fits, half, "both halves"))
    for key in candidates:
        if key not in used:
            out.append(_merged([key], candidates, fits, half, f"half {key[0]}"))
    return out


def _merged(keys, candidates, fits, half, found_on: str) -> Found:
    """Members: each constituent's images on the half it was not fitted on."""
    member = np.zeros(len(half), bool)
    assessed = np.zeros(len(half), bool)
    typicality = np.zeros(len(half))
    for h, k in keys:
        held = half != h
        member |= candidates[(h, k)] & held
        assessed |= held
        typicality = np.where(candidates[(h, k)] & held, fits[h][2], typicality)
    return Found("mixture", member, assessed, typicality, found_on)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


@dataclass
class Scorer:
    """One finding's images ranked once for every slice that is tested on them: the rankings
    of all images and of each half (a slice found on one half is assessed on the other), and
    the test's values (rank losses within each half, ranked within half and class)."""

    rankings: dict  # "all", 1, 2 -> score.Ranking
    half: np.ndarray
    values: np.ndarray
    strata: np.ndarray

    @classmethod
    def of(cls, y, score, half, patients, threshold: float) -> Scorer:
        rankings = {"all": Ranking.of(y, score, patients, threshold)}
        loss = np.zeros(len(y))
        for h in (1, 2):
            at = half == h
            rankings[h] = Ranking.of(y[at], score[at], patients[at], threshold)
            loss[at] = rankings[h].loss
        strata = half.astype(np.int64) * 2 + np.asarray(y)
        return cls(rankings, half, stratum_ranks(loss, strata), strata)

    def ranking(self, assessed: np.ndarray):
        return self.rankings["all" if assessed.all() else int(self.half[assessed][0])]


def scored(found: list[Found], sc: Scorer, s: SearchSettings, screen: float) -> list:
    """(slice, numbers) of each mixture slice over the images it is assessed on, with its
    test (a CI where its p is below `screen`); slices under `min_size` or over half the
    images, or with too few of either class, are dropped."""
    out = []
    for f in found:
        a = f.assessed
        if not _sized(int((f.member & a).sum()), int(a.sum()), s):
            continue
        z, p = grouped_test(sc.values[a], np.where(f.member[a], 0, -1), sc.strata[a], 1)
        metrics = slice_metrics(sc.ranking(a), f.member[a], s.score, ci=p[0] < screen)
        if metrics is not None:
            out.append((f, {**metrics, "z": float(z[0]), "p": float(p[0])}))
    return out


def cluster_rows(
    cluster: np.ndarray, sc: Scorer, s: SearchSettings, screen: float, found_on: str = MAP
) -> list:
    """(slice or None, numbers, group id) per map cluster (noise left out), or per value of a
    manifest column (`found_on` ATTRIBUTE; unknown: -1), on every image: nothing chose them
    for their errors. All are tested at once; those below `screen` (the BH level: no other
    can be flagged) get every number and a `Found`, the others their counts and test (so BH
    counts them)."""
    ids = np.unique(cluster[cluster >= 0])
    if not len(ids):
        return []
    group = np.where(cluster >= 0, np.searchsorted(ids, cluster), -1)
    z, p = grouped_test(sc.values, group, sc.strata, len(ids))
    r = sc.rankings["all"]
    counts = _counts(group, len(ids), r)
    out = []
    for g, c in enumerate(ids):
        if not _sized(counts[g]["n_images"], len(cluster), s, found_on):
            continue
        member = cluster == c
        metrics = slice_metrics(r, member, s.score) if p[g] < screen else None
        if metrics is not None:
            method = "cluster" if found_on == MAP else "attribute"
            found = Found(method, member, np.ones(len(member), bool), member.astype(float),
                          found_on, int(c))  # fmt: skip
            out.append((found, {**metrics, "z": z[g], "p": p[g]}, int(c)))
        else:
            out.append((None, {**counts[g], "z": z[g], "p": p[g]}, int(c)))
    return out


def _counts(group, groups: int, r) -> list[dict]:
    """Every cluster's size, classes and errors at once (the rows of unremarkable clusters)."""
    import pandas as pd

    inside = group >= 0
    g = group[inside]
    y, err = r.y[inside], r.error[inside]
    n = np.bincount(g, minlength=groups)
    pos = np.bincount(g, weights=y, minlength=groups)
    fn = np.bincount(g, weights=y & err, minlength=groups)
    fp = np.bincount(g, weights=~y & err, minlength=groups)
    per = pd.Series(r.patients[inside]).groupby(g).nunique()
    per = per.reindex(range(groups), fill_value=0).to_numpy()
    rate_all, n_err = float(r.error.mean()), int(r.error.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_in = (fn + fp) / n
        rate_out = (n_err - fn - fp) / (len(r.y) - n)
    return [{"n_images": int(n[i]), "n_patients": int(per[i]), "positives": int(pos[i]),
             "negatives": int(n[i] - pos[i]), "fn": int(fn[i]), "fp": int(fp[i]),
             "error_rate_in": rate_in[i], "error_rate_out": rate_out[i],
             "error_lift": rate_in[i] / rate_all if rate_all else np.nan,
             "error_share": (fn[i] + fp[i]) / n_err if n_err else np.nan}
            for i in range(groups)]  # fmt: skip
