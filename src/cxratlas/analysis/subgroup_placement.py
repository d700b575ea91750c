"""Where a subgroup sits in one model's space: how compact it is, and which clusters hold it.

Compactness is judged against random sets of the same size drawn from the same images (a
seeded null, `random_sets` draws), on two statistics:

- `knn_share`: over the members, the mean share of their k nearest neighbours in the
  embedding space (the model's kNN graph, the image itself left out) that are members too.
  Random sets give about (m - 1) / (n - 1); a subgroup the model gathers gives more.
- `spread`: the root mean squared distance between two members on the 2-D map. Random sets
  spread over the whole map; a subgroup the map gathers spreads less (`spread_ratio` < 1).

Each is reported with the null's mean and standard deviation, a z score and an empirical
one-sided p, (1 + draws at least as extreme) / (1 + draws), so p is never 0 and its floor is
1 / (1 + random_sets). Clusters: for each cluster of the model (and its noise), how many
members it holds, the share of the subgroup and of the cluster that is in both, and the
cluster's enrichment for the subgroup (the enrichment machinery: odds ratio, Fisher p,
Benjamini-Hochberg over the model's clusters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxratlas.analysis.enrichment import enrichment

PLACEMENT_COLUMNS = ["model", "members", "images", "knn_share", "knn_null_mean", "knn_null_sd",
                     "knn_z", "knn_p", "spread", "spread_null_mean", "spread_null_sd",
                     "spread_ratio", "spread_z", "spread_p", "top_cluster", "top_cluster_share",
                     "clusters_for_half", "noise_share", "random_sets"]  # fmt: skip
CLUSTER_COLUMNS = ["model", "cluster", "name", "cluster_size", "members_in", "share_of_subgroup",
                   "share_of_cluster", "odds_ratio", "p_value", "p_adjusted"]  # fmt: skip


@dataclass
class ModelSpace:
    """One model's view of the analysed images (rows in one order): the kNN graph (row
    positions, the row itself excluded), the 2-D map, cluster ids and names."""

    model: str
    neighbours: np.ndarray  # (n, k) int row positions
    xy: np.ndarray  # (n, 2)
    cluster: np.ndarray  # (n,) str: "c3" or "noise"
    names: dict[str, str]  # cluster id -> its name

    @classmethod
    def from_atlas(cls, atlas: pd.DataFrame, model: str) -> ModelSpace:
        """From the atlas's per-model columns (`io.AtlasModelColumns`)."""
        from cxratlas.io import AtlasModelColumns

        c = AtlasModelColumns(model)
        ids = atlas[c.neighbors].map(lambda s: np.asarray(s["ids"], np.int64))
        rows = np.arange(len(atlas))
        knn = np.stack([_without(i, r) for i, r in zip(ids, rows, strict=True)])
        clusters = atlas[c.cluster].astype(str).to_numpy()
        names = dict(zip(clusters, atlas[c.cluster_label].astype(str), strict=True))
        xy = atlas[[c.x, c.y]].to_numpy(np.float64)
        return cls(model, knn, xy, clusters, names)


def _without(ids: np.ndarray, row: int) -> np.ndarray:
    """A row's neighbours without itself (the atlas lists it first), k - 1 of them."""
    kept = ids[ids != row]
    return kept[: len(ids) - 1]


def knn_share(neighbours: np.ndarray, mask: np.ndarray) -> float:
    """Mean over members of the share of their neighbours that are members."""
    return float(mask[neighbours[mask]].mean())


def spread(xy: np.ndarray, mask: np.ndarray) -> float:
    """Root mean squared distance between two distinct members on the map: the mean squared
    pairwise distance is 2 m / (m - 1) times the members' total variance."""
    m = int(mask.sum())
    if m < 2:
        return np.nan
    return float(np.sqrt(2 * m / (m - 1) * xy[mask].var(axis=0).sum()))


def null_draws(space: ModelSpace, m: int, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both statistics for `draws` random sets of `m` images (seeded)."""
    rng = np.random.default_rng(seed)
    n = len(space.cluster)
    share, spreads = np.empty(draws), np.empty(draws)
    mask = np.zeros(n, bool)
    for d in range(draws):
        picked = rng.choice(n, m, replace=False)
        mask[picked] = True
        share[d] = knn_share(space.neighbours, mask)
        spreads[d] = spread(space.xy, mask)
        mask[picked] = False
    return share, spreads


def _versus(observed: float, null: np.ndarray, greater: bool) -> tuple[float, float, float, float]:
    """(null mean, null sd, z, empirical one-sided p) of `observed` against `null`."""
    mean, sd = float(null.mean()), float(null.std(ddof=1)) if len(null) > 1 else np.nan
    z = (observed - mean) / sd if sd and sd > 0 else np.nan
    extreme = null >= observed if greater else null <= observed
    return mean, sd, float(z), float((1 + extreme.sum()) / (1 + len(null)))


def p_text(p: float, draws: int, short: bool = False) -> str:
    """An empirical p as a reader should take it: at its floor, no random set was as extreme."""
    if p > 1.5 / (1 + draws):
        return f"p {p:.2g}"
    return f"p ≤ {p:.2g}" if short else f"p {p:.2g}: none of {draws} random sets as extreme"


def placement(space: ModelSpace, mask: np.ndarray, draws: int, seed: int) -> dict:
    """One row of `PLACEMENT_COLUMNS` for the members `mask` (over the space's rows)."""
    m = int(mask.sum())
    share_null, spread_null = null_draws(space, m, draws, seed)
    share, spread_ = knn_share(space.neighbours, mask), spread(space.xy, mask)
    k_mean, k_sd, k_z, k_p = _versus(share, share_null, greater=True)
    s_mean, s_sd, s_z, s_p = _versus(spread_, spread_null, greater=False)
    held = pd.Series(space.cluster[mask]).value_counts()
    clustered = held.drop("noise", errors="ignore")
    top = clustered.index[0] if len(clustered) else None
    return {
        "model": space.model, "members": m, "images": len(mask),
        "knn_share": share, "knn_null_mean": k_mean, "knn_null_sd": k_sd, "knn_z": k_z,
        "knn_p": k_p, "spread": spread_, "spread_null_mean": s_mean, "spread_null_sd": s_sd,
        "spread_ratio": spread_ / s_mean if s_mean else np.nan, "spread_z": s_z,
        "spread_p": s_p, "top_cluster": space.names.get(top, "") if top else "",
        "top_cluster_share": float(clustered.iloc[0] / m) if top else 0.0,
        "clusters_for_half": int(np.searchsorted(clustered.cumsum().to_numpy(), m / 2) + 1)
        if clustered.sum() >= m / 2 else np.nan,
        "noise_share": float(held.get("noise", 0) / m), "random_sets": draws,
    }  # fmt: skip


def cluster_table(space: ModelSpace, mask: np.ndarray, name: str) -> pd.DataFrame:
    """Per cluster holding a member (most members first): `CLUSTER_COLUMNS`."""
    groups = {c: space.cluster == c for c in pd.unique(space.cluster[mask])}
    indicator = pd.DataFrame({name: pd.array(mask.astype(int), "Int8")})
    table = enrichment(groups, indicator)
    out = pd.DataFrame({
        "model": space.model, "cluster": table["group"], "name": table["group"].map(space.names),
        "cluster_size": table["size"], "members_in": table["positives_in"],
        "share_of_subgroup": table["positives_in"] / max(int(mask.sum()), 1),
        "share_of_cluster": table["prevalence_in"], "odds_ratio": table["odds_ratio"],
        "p_value": table["p_value"], "p_adjusted": table["p_adjusted"],
    })  # fmt: skip
    return out.sort_values("members_in", ascending=False, kind="stable")[CLUSTER_COLUMNS]
