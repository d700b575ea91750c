"""How differently models see the same images, on the shared sample.

- kNN overlap: per point, the Jaccard index of two models' neighbour sets (self excluded);
  its mean is the pairwise Jaccard@k (the "mutual kNN" of the Platonic Representation paper).
- kept: per point, the fraction of one model's neighbours that another keeps; averaged over
  the other models it is the per-point agreement the atlas colours by.
- linear CKA (Kornblith et al. 2019), in its feature-space form, O(n d^2) instead of O(n^2).
- cluster agreement: ARI and NMI of the two models' HDBSCAN labels (noise is one label).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cxratlas.reduce.neighbours import agreement, aligned_neighbours, knn_jaccard


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear CKA between two representations of the same n rows (columns centred)."""
    X = np.asarray(X, np.float64) - np.asarray(X, np.float64).mean(0)
    Y = np.asarray(Y, np.float64) - np.asarray(Y, np.float64).mean(0)
    cross = np.linalg.norm(Y.T @ X, "fro") ** 2
    return float(cross / (np.linalg.norm(X.T @ X, "fro") * np.linalg.norm(Y.T @ Y, "fro")))


def compare_models(
    reduced: dict[str, str],
    embeddings: dict[str, str] | None = None,
    trust: dict[str, float] | None = None,
    cka_sample: int = 20000,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pairwise table (model_a, model_b, jaccard_k, cka, ari, nmi) and per-model table
    (model, trustworthiness, clusters, mean agreement) on the images every model covers."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from cxratlas.io import read_embeddings

    tables = {m: pq.read_table(p) for m, p in reduced.items()}
    common = None
    for t in tables.values():
        ids = pd.Index(t.column("image_id").to_pylist())
        common = ids if common is None else common.intersection(ids, sort=False)
    nbrs, labels = {}, {}
    for m, t in tables.items():
        nbrs[m], rows = aligned_neighbours(t, common)
        labels[m] = t.column("cluster").to_numpy()[rows]
    vectors = {}
    if embeddings:
        pick = np.sort(
            np.random.default_rng(seed).choice(len(common), min(cka_sample, len(common)), False)
        )
        for m, path in embeddings.items():
            ids, X, _ = read_embeddings(path)
            vectors[m] = X[pd.Index(ids).get_indexer(common[pick])]
    rows_out = []
    for a, b in itertools.combinations(tables, 2):
        rows_out.append(
            {
                "model_a": a,
                "model_b": b,
                "n": len(common),
                "k": int(nbrs[a].shape[1] - 1),
                "jaccard_k": float(knn_jaccard(nbrs[a], nbrs[b]).mean()),
                "cka": linear_cka(vectors[a], vectors[b]) if vectors else np.nan,
                "ari": float(adjusted_rand_score(labels[a], labels[b])),
                "nmi": float(normalized_mutual_info_score(labels[a], labels[b])),
            }
        )
    agree = agreement(nbrs) if len(tables) > 1 else {m: np.ones(len(common)) for m in tables}
    per_model = pd.DataFrame(
        {
            "model": list(tables),
            "trustworthiness": [(trust or {}).get(m, np.nan) for m in tables],
            "clusters": [len(set(labels[m].tolist()) - {-1}) for m in tables],
            "mean_agreement": [float(agree[m].mean()) for m in tables],
        }
    )
    return pd.DataFrame(rows_out), per_model
