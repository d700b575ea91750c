"""Maps that stay where the user left them when the sample changes (the archive grew, was
exported again, or lost rows), and drift.json, which says how far they moved.

- `update: full` (the default): the map is recomputed, then turned, mirrored, scaled and shifted
  onto the last one by orthogonal Procrustes on the images both hold, so the same images sit in
  the same places. Clusters take the id of the earlier cluster whose images they hold (matched
  by shared images), so a note like "cluster 7 = pacemakers" survives a rerun; a cluster with
  no earlier match gets an id never used before.
- `update: extend`: earlier images keep their positions and clusters exactly. Each new image is
  placed at the distance-weighted mean of the positions of its kNN neighbours that are placed
  already (in the embedding space: the graph the reduction built), in rounds until every new
  image is placed; its cluster is its placed neighbours' weighted majority. This is
  approx-umap's recipe and latent-scope's `--transform-from`; umap-learn's own `transform`
  cannot run here, as the model was fitted on a precomputed (FAISS) graph and has no search
  index. Up to `extend_check_max` images a full recomputation is made too, and drift.json
  records how far the new images' map neighbourhoods agree with it.

drift.json, per model: the images shared with, new to and removed from the last map; for the
shared ones, the overlap of their 2-D neighbourhoods in the old and the new map and the
Procrustes disparity (0: the same map up to turning and scale; 1: unrelated); the cluster ids
kept, new and retired.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.io import EMBEDDING_META_KEY
from cxratlas.reduce.placement import place_by_neighbours

log = logging.getLogger(__name__)

OVERLAP_QUERIES = 20000  # shared images whose map neighbourhoods are compared (seeded sample)
MATCH_SHARE = 0.5  # a cluster keeps an earlier id when it holds half of that cluster's images


@dataclass(frozen=True)
class PreviousMap:
    """One model's last map, as reduced.parquet holds it."""

    ids: np.ndarray
    xy: np.ndarray
    cluster: np.ndarray
    next_cluster: int  # the first cluster id never used in this model's maps

    @classmethod
    def read(cls, path: str | None) -> PreviousMap | None:
        import pyarrow.parquet as pq

        if not path or not Path(path).exists():
            return None
        try:
            table = pq.read_table(path, columns=["image_id", "x", "y", "cluster"])
        except (OSError, ValueError, KeyError) as exc:  # another version's file: start afresh
            log.warning("the last map %s is not readable (%s): the new one is not aligned", path,
                        exc)  # fmt: skip
            return None
        meta = json.loads((table.schema.metadata or {}).get(EMBEDDING_META_KEY, b"{}"))
        cluster = table.column("cluster").to_numpy().astype(np.int64)
        used = int(cluster.max()) + 1 if len(cluster) else 0
        return cls(
            ids=np.asarray(table.column("image_id").to_pylist(), dtype=object),
            xy=np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()]),
            cluster=cluster,
            next_cluster=max(int(meta.get("next_cluster", 0)), used),
        )

    def positions(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rows of `ids`, rows of this map) for the images both hold."""
        where = pd.Index(self.ids).get_indexer(pd.Index(ids, dtype=object))
        new = np.flatnonzero(where >= 0)
        return new, where[new]


# -- full: recompute, then align ---------------------------------------------------------------


def procrustes(xy: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, float]:
    """The similarity transform (rotation or reflection, scale, shift) that lays `xy` onto `ref`
    best in least squares, as a function of any points, and the disparity left (scipy's
    `procrustes` definition: both standardised, 0 is a perfect fit)."""
    from scipy.linalg import orthogonal_procrustes

    mu_a, mu_b = xy.mean(0), ref.mean(0)
    A, B = xy - mu_a, ref - mu_b
    na, nb = np.linalg.norm(A), np.linalg.norm(B)
    if na == 0 or nb == 0:
        return np.eye(2), 1.0
    R, singular_sum = orthogonal_procrustes(A, B)
    scale = singular_sum / na**2
    T = np.vstack([R * scale, mu_b - mu_a @ R * scale])  # [x, y, 1] @ T
    return T, float(max(0.0, 1.0 - (singular_sum / (na * nb)) ** 2))


def apply(T: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return (xy @ T[:2] + T[2]).astype(np.float32)


def match_clusters(
    labels: np.ndarray, ids: list[str], previous: PreviousMap
) -> tuple[np.ndarray, dict[str, list[int]], int]:
    """New labels with earlier ids where a new cluster holds most of an earlier cluster's
    shared images (one to one: Hungarian assignment on the shared counts); others get ids never
    used. Returns (labels, {kept, new, retired}, next unused id)."""
    from scipy.optimize import linear_sum_assignment

    rows, old_rows = previous.positions(ids)
    new_l, old_l = labels[rows], previous.cluster[old_rows]
    both = (new_l >= 0) & (old_l >= 0)
    new_ids, old_ids = (
        np.unique(labels[labels >= 0]),
        np.unique(previous.cluster[previous.cluster >= 0]),
    )
    counts = pd.crosstab(new_l[both], old_l[both]).reindex(index=new_ids, columns=old_ids,
                                                          fill_value=0)  # fmt: skip
    mapping: dict[int, int] = {}
    if counts.size:
        r, c = linear_sum_assignment(-counts.to_numpy())
        old_size = pd.Series(old_l[old_l >= 0]).value_counts()
        for i, j in zip(r, c, strict=True):
            shared = counts.iat[i, j]
            if shared and shared >= MATCH_SHARE * old_size.get(counts.columns[j], 0):
                mapping[int(counts.index[i])] = int(counts.columns[j])
    nxt = previous.next_cluster
    for k in new_ids:
        if int(k) not in mapping:
            mapping[int(k)] = nxt
            nxt += 1
    out = labels.astype(np.int32).copy()
    for k, v in mapping.items():
        out[labels == k] = v
    kept = sorted(v for k, v in mapping.items() if v < previous.next_cluster)
    fates = {
        "kept": kept,
        "new": sorted(v for v in mapping.values() if v >= previous.next_cluster),
        "retired": sorted(set(old_ids.tolist()) - set(kept)),
    }
    return out, fates, nxt


# -- extend: place the new images, keep the old ones -------------------------------------------


def place_new(
    ids: list[str], knn_idx: np.ndarray, knn_dist: np.ndarray, previous: PreviousMap
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xy, cluster, placed-in-round) for every row: earlier images where they were, new ones
    placed from their neighbours (reduce.placement)."""
    n = len(ids)
    xy = np.zeros((n, 2), np.float64)
    cluster = np.full(n, -1, np.int32)
    placed = np.zeros(n, bool)
    rows, old_rows = previous.positions(ids)
    xy[rows], cluster[rows], placed[rows] = previous.xy[old_rows], previous.cluster[old_rows], True
    rounds = place_by_neighbours(xy, cluster, placed, knn_idx, knn_dist)
    return xy.astype(np.float32), cluster, rounds


# -- drift: how far the map moved --------------------------------------------------------------


def map_neighbours(xy: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The k nearest other points (2-D, Euclidean) of the rows `queries` of `xy`."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(xy) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(xy)
    return nn.kneighbors(xy[queries], return_distance=False)[:, 1:]


def neighbour_overlap(a: np.ndarray, b: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean share of each query's k map neighbours that maps `a` and `b` (same rows) agree on."""
    if len(a) < 3 or not len(queries):
        return float("nan")
    na, nb = map_neighbours(a, queries, k), map_neighbours(b, queries, k)
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(na, nb, strict=True)]))


def _queries(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, min(n, OVERLAP_QUERIES), replace=False))


@dataclass
class Stabilised:
    """The map to write: positions, cluster ids, the first id never used, and drift.json."""

    xy: np.ndarray
    cluster: np.ndarray
    next_cluster: int
    drift: dict[str, Any]


def stabilise(
    ids: list[str],
    new_map: tuple[np.ndarray, np.ndarray] | None,
    graph: tuple[np.ndarray, np.ndarray],
    previous: PreviousMap | None,
    update: str,
    k: int,
    seed: int = 0,
) -> Stabilised:
    """The map to write given the recomputed one (`new_map`: xy and cluster labels; None when
    `extend` skipped the recomputation), the kNN graph and the last map."""
    drift: dict[str, Any] = {"update": update, "previous": previous is not None, "n": len(ids)}
    if previous is None:
        xy, labels = new_map
        return Stabilised(xy, labels, int(labels.max(initial=-1)) + 1, drift | {"n_new": len(ids)})
    rows, old_rows = previous.positions(ids)
    drift |= {"n_shared": len(rows), "n_new": len(ids) - len(rows),
              "n_removed": len(previous.ids) - len(rows), "k": k}  # fmt: skip
    if update == "extend":
        out = _extend(ids, new_map, graph, previous, k, seed)
    else:
        out = _realign(ids, new_map, previous, rows, old_rows)
    out.drift = drift | out.drift | movement(previous.xy[old_rows], out.xy[rows], k, seed)
    return out


def _realign(ids, new_map, previous: PreviousMap, rows, old_rows) -> Stabilised:
    xy, labels = new_map
    if len(rows) >= 3:
        T, _ = procrustes(xy[rows].astype(np.float64), previous.xy[old_rows])
        xy = apply(T, xy)
    labels, fates, nxt = match_clusters(labels, ids, previous)
    return Stabilised(xy, labels, nxt, {"clusters": fates})


def _extend(ids, new_map, graph, previous: PreviousMap, k, seed) -> Stabilised:
    xy, labels, rounds = place_new(ids, *graph, previous)
    new = np.flatnonzero(rounds != 0)
    info: dict[str, Any] = {"placed": len(new), "rounds": int(rounds.max(initial=0)),
                            "unplaced": int((rounds < 0).sum())}  # fmt: skip
    if new_map is not None and len(new):  # the full recomputation, to compare with
        info["knn_overlap_new_vs_full"] = neighbour_overlap(
            xy, new_map[0], new[_queries(len(new), seed)], k
        )
        info["checked_against_full"] = True
    kept = sorted(set(labels[labels >= 0].tolist()))
    fates = {
        "kept": kept,
        "new": [],
        "retired": sorted(set(previous.cluster.tolist()) - set(kept) - {-1}),
    }
    return Stabilised(xy, labels, previous.next_cluster, {"clusters": fates, "extend": info})


def movement(old: np.ndarray, new: np.ndarray, k: int, seed: int = 0) -> dict[str, Any]:
    """How far the shared images moved: their map neighbourhoods' overlap (1: the same
    neighbours) and the Procrustes disparity (0: the same map up to turning and scale)."""
    queries = _queries(len(old), seed)
    disparity = procrustes(new.astype(np.float64), old)[1] if len(old) >= 3 else float("nan")
    overlap = neighbour_overlap(old, new, queries, k)
    return {
        "knn_overlap": overlap if np.isfinite(overlap) else None,  # None: too few shared images
        "knn_overlap_queries": len(queries),
        "procrustes_disparity": disparity if np.isfinite(disparity) else None,
    }


class MapUpdate:
    """The reduction's last step when a map existed before: `recompute` says whether UMAP and
    the clusters run at all (not with `extend` past `extend_check_max` images); calling it
    returns the map to write, and keeps drift.json's content in `.result`."""

    def __init__(self, ids: list[str], previous: PreviousMap | None, settings) -> None:
        self.ids, self.previous, self.s = ids, previous, settings
        extend = settings.update == "extend" and previous is not None
        self.recompute = not extend or len(ids) <= settings.extend_check_max
        self.result: Stabilised | None = None

    def __call__(self, new_map, knn_idx, knn_dist) -> tuple[np.ndarray, np.ndarray]:
        s = self.s
        self.result = stabilise(self.ids, new_map, (knn_idx, knn_dist), self.previous,
                                s.update, s.k, s.rng_seed)  # fmt: skip
        d = self.result.drift
        if self.previous is not None:
            log.info(
                "map %s onto the last one: %d shared, %d new, %d removed images; neighbourhood "
                "overlap %s, Procrustes disparity %s",
                "extended" if s.update == "extend" else "aligned", d["n_shared"], d["n_new"],
                d["n_removed"], d["knn_overlap"], d["procrustes_disparity"],
            )  # fmt: skip
        return self.result.xy, self.result.cluster


DRIFT_COLUMNS = ["model", "update", "n", "n_shared", "n_new", "n_removed", "knn_overlap",
                 "procrustes_disparity", "clusters_kept", "clusters_new", "clusters_retired",
                 "new_vs_full_overlap", "note"]  # fmt: skip


def drift_table(paths: list[str]) -> pd.DataFrame:
    """One row per model from its drift.json: what the report shows."""
    rows = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        c, ext = d.get("clusters", {}), d.get("extend", {})
        rows.append({
            "model": d["model"], "update": d["update"], "n": d["n"],
            "n_shared": d.get("n_shared", 0), "n_new": d.get("n_new", d["n"]),
            "n_removed": d.get("n_removed", 0), "knn_overlap": d.get("knn_overlap"),
            "procrustes_disparity": d.get("procrustes_disparity"),
            "clusters_kept": len(c.get("kept", [])), "clusters_new": len(c.get("new", [])),
            "clusters_retired": len(c.get("retired", [])),
            "new_vs_full_overlap": ext.get("knn_overlap_new_vs_full"),
            "note": "" if d["previous"] else "first map: nothing to compare with",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)
