"""How differently models see the same images, on the shared sample.

- kNN overlap: per point, the Jaccard index of two models' neighbour sets (self excluded);
  its mean is the pairwise Jaccard@k (the "mutual kNN" of the Platonic Representation paper).
- kept: per point, the fraction of one model's neighbours that another keeps; averaged over
  the other models it is the per-point agreement the atlas colours by.
- linear CKA (Kornblith et al. 2019), in its feature-space form, O(n d^2) instead of O(n^2).
- cluster agreement: ARI and NMI of the two models' HDBSCAN labels (noise is one label).

Each of kNN overlap, CKA and ARI has a 95% interval, so a reader can tell two pairs apart:
kNN overlap and ARI from a patient bootstrap (all of a patient's images drawn together, the
graphs and clusters held fixed: the interval says how much the sample of images moves the
number); CKA from a delete-a-group jackknife over `JACKKNIFE_GROUPS` groups of patients (a
normal interval, clipped to [0, 1]), because a bootstrap would recompute a d x d product per
resample, while the jackknife subtracts each group's share of one pass.

- cluster correspondence: for each model's cluster, the cluster of every other model that holds
  most of the same images, and their Jaccard index: a cluster no other model holds together
  (best Jaccard below `HELD_TOGETHER`) is what that model alone carves out.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cxratlas.analysis.probes import resample_weights
from cxratlas.reduce.neighbours import agreement, aligned_neighbours, knn_jaccard

JACKKNIFE_GROUPS = 20
HELD_TOGETHER = 0.5


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA between two representations of the same n rows (columns centred)."""
    return _cka(*_cka_sums(X, Y))


def _cka_sums(X: np.ndarray, Y: np.ndarray) -> tuple:
    """The sums linear CKA is made of: n, column sums and the three cross-products."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    return len(X), X.sum(0), Y.sum(0), X.T @ X, Y.T @ X, Y.T @ Y


def _cka(n, sx, sy, xx, yx, yy) -> float:
    """CKA from `_cka_sums`: centring is a rank-one correction of each product."""
    cxx = xx - np.outer(sx, sx) / n
    cyx = yx - np.outer(sy, sx) / n
    cyy = yy - np.outer(sy, sy) / n
    return float(np.linalg.norm(cyx) ** 2 / (np.linalg.norm(cxx) * np.linalg.norm(cyy)))


def cka_interval(X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> tuple[float, float, float]:
    """(CKA, low, high): the delete-a-group jackknife's normal 95% interval over
    `JACKKNIFE_GROUPS` seeded groups of patients (`groups`: one label per row)."""
    total = _cka_sums(X, Y)
    value = _cka(*total)
    patients, inverse = np.unique(groups, return_inverse=True)
    bucket = np.random.default_rng(0).permutation(len(patients))[inverse] % JACKKNIFE_GROUPS
    drops = []
    for g in np.unique(bucket):
        part = _cka_sums(X[bucket == g], Y[bucket == g])
        drops.append(_cka(*(t - p for t, p in zip(total, part, strict=True))))
    drops = np.asarray(drops)
    if len(drops) < 2:
        return value, np.nan, np.nan
    se = np.sqrt((len(drops) - 1) / len(drops) * ((drops - drops.mean()) ** 2).sum())
    return value, max(0.0, value - 1.96 * se), min(1.0, value + 1.96 * se)


def weighted_ari(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Adjusted Rand index of labels `a` and `b` under each row of `weights` (B x n: how often
    each point was drawn), from the weighted contingency table of each resample."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    cell = ai * (bi.max() + 1) + bi
    shape = (ai.max() + 1, bi.max() + 1)
    out = []
    for w in np.atleast_2d(weights):
        table = np.bincount(cell, weights=w, minlength=shape[0] * shape[1]).reshape(shape)
        index, rows, cols = _pairs(table), _pairs(table.sum(1)), _pairs(table.sum(0))
        expected = rows * cols / max(_pairs(np.array([w.sum()])), 1)
        top = (rows + cols) / 2 - expected
        out.append((index - expected) / top if top else 1.0)
    return np.asarray(out)


def _pairs(counts: np.ndarray) -> float:
    """Pairs of points within each cell, summed: the Rand index's counting unit."""
    return float((counts * (counts - 1) / 2).sum())


def _percentiles(boots: list[np.ndarray]) -> tuple[float, float]:
    values = np.concatenate(boots) if boots else np.empty(0)
    values = values[~np.isnan(values)]
    return tuple(np.percentile(values, [2.5, 97.5])) if len(values) else (np.nan, np.nan)


def pair_agreement(nbrs_a, nbrs_b, labels_a, labels_b, groups, bootstrap, seed) -> dict:
    """kNN overlap and cluster ARI of two models with their patient-bootstrap 95% CIs."""
    from sklearn.metrics import adjusted_rand_score

    jac = knn_jaccard(nbrs_a, nbrs_b)
    boots_j, boots_a = [], []
    for w in resample_weights(groups, bootstrap, seed):
        boots_j.append(w @ jac / w.sum(1))
        boots_a.append(weighted_ari(labels_a, labels_b, w))
    (jl, jh), (al, ah) = _percentiles(boots_j), _percentiles(boots_a)
    return {"jaccard_k": float(jac.mean()), "jaccard_low": float(jl), "jaccard_high": float(jh),
            "ari": float(adjusted_rand_score(labels_a, labels_b)), "ari_low": float(al),
            "ari_high": float(ah)}  # fmt: skip


@dataclass(frozen=True)
class CompareSettings:
    """`analysis.compare` (and `analysis.seed`), built once."""

    cka_sample: int = 20000  # images on which linear CKA is computed
    bootstrap: int = 200  # patient resamples for the kNN-overlap and ARI intervals
    seed: int = 0

    @classmethod
    def from_config(cls, compare: dict, seed: int) -> CompareSettings:
        return cls(compare["cka_sample"], compare["bootstrap"], seed)


@dataclass
class Comparison:
    pairs: pd.DataFrame  # model_a, model_b, n, k, each metric with its interval, nmi
    models: pd.DataFrame  # model, trustworthiness, clusters, mean_agreement
    clusters: pd.DataFrame  # model, cluster, size, other, other_cluster, jaccard


def compare_models(
    reduced: dict[str, str],
    embeddings: dict[str, str] | None = None,
    trust: dict[str, float] | None = None,
    groups: pd.Series | None = None,
    settings: CompareSettings | None = None,
) -> Comparison:
    """The pairwise table, the per-model table and the cluster correspondence, on the images
    every model covers; `groups` holds each image's patient (an image is its own without)."""
    from sklearn.metrics import normalized_mutual_info_score

    from cxratlas.io import read_embeddings

    s = settings or CompareSettings()
    tables = {m: pq.read_table(p) for m, p in reduced.items()}
    common = None
    for t in tables.values():
        ids = pd.Index(t.column("image_id").to_pylist())
        common = ids if common is None else common.intersection(ids, sort=False)
    patients = groups.reindex(common) if groups is not None else pd.Series(common, index=common)
    patients = patients.fillna(pd.Series(common, index=common)).astype(str).to_numpy()
    nbrs, labels = {}, {}
    for m, t in tables.items():
        nbrs[m], rows = aligned_neighbours(t, common)
        labels[m] = t.column("cluster").to_numpy()[rows]
    vectors = {}
    pick = np.sort(
        np.random.default_rng(s.seed).choice(len(common), min(s.cka_sample, len(common)), False)
    )
    for m, path in (embeddings or {}).items():
        ids, X, _ = read_embeddings(path)
        vectors[m] = X[pd.Index(ids).get_indexer(common[pick])]
    rows_out = []
    for a, b in itertools.combinations(tables, 2):
        cka = (cka_interval(vectors[a], vectors[b], patients[pick]) if vectors
               else (np.nan, np.nan, np.nan))  # fmt: skip
        rows_out.append({
            "model_a": a, "model_b": b, "n": len(common), "k": int(nbrs[a].shape[1] - 1),
            **pair_agreement(nbrs[a], nbrs[b], labels[a], labels[b], patients, s.bootstrap,
                             s.seed),
            "cka": cka[0], "cka_low": cka[1], "cka_high": cka[2],
            "nmi": float(normalized_mutual_info_score(labels[a], labels[b])),
        })  # fmt: skip
    agree = agreement(nbrs) if len(tables) > 1 else {m: np.ones(len(common)) for m in tables}
    per_model = pd.DataFrame(
        {
            "model": list(tables),
            "trustworthiness": [(trust or {}).get(m, np.nan) for m in tables],
            "clusters": [len(set(labels[m].tolist()) - {-1}) for m in tables],
            "mean_agreement": [float(agree[m].mean()) for m in tables],
        }
    )
    return Comparison(pd.DataFrame(rows_out, columns=PAIR_COLUMNS), per_model,
                      cluster_correspondence(labels))  # fmt: skip


PAIR_COLUMNS = ["model_a", "model_b", "n", "k", "jaccard_k", "jaccard_low", "jaccard_high",
                "cka", "cka_low", "cka_high", "ari", "ari_low", "ari_high", "nmi"]  # fmt: skip
CLUSTER_COLUMNS = ["model", "cluster", "size", "other", "other_cluster", "jaccard"]


def cluster_correspondence(labels: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per model, cluster (noise left out) and other model: the other's cluster with the highest
    Jaccard index over the same images (`other_cluster` -1 where the best is its noise)."""
    rows = []
    for m, lab in labels.items():
        for c in sorted(set(lab.tolist()) - {-1}):
            inside = lab == c
            for o, other in labels.items():
                if o == m:
                    continue
                best, best_j = -1, 0.0
                for oc in np.unique(other[inside]):
                    theirs = other == oc
                    j = (inside & theirs).sum() / (inside | theirs).sum()
                    if j > best_j:
                        best, best_j = int(oc), float(j)
                rows.append({"model": m, "cluster": int(c), "size": int(inside.sum()),
                             "other": o, "other_cluster": best, "jaccard": best_j})  # fmt: skip
    return pd.DataFrame(rows, columns=CLUSTER_COLUMNS)
