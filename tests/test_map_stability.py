"""Maps that stay put when the sample changes: Procrustes alignment, cluster ids matched by shared
images, `extend` placing new images without moving old ones, and drift.json's figures."""

from __future__ import annotations

import numpy as np
import pytest

from cxratlas.reduce import ReduceSettings, reduce_embeddings
from cxratlas.reduce.stability import (
    MapUpdate,
    PreviousMap,
    apply,
    match_clusters,
    movement,
    procrustes,
)


def _blobs(n, centres, seed):
    """n unit vectors around each of `centres` (rows): labelled clusters in 64-D."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + 0.15 * rng.standard_normal((n, c.size)) for c in centres])
    return X.astype(np.float32), np.repeat(np.arange(len(centres)), n)


CENTRES = np.random.default_rng(0).standard_normal((5, 64))
SETTINGS = ReduceSettings(k=10, min_cluster_size=15, trust_sample=300)


def _previous(ids, result, next_cluster=None):
    used = int(result.cluster.max()) + 1
    return PreviousMap(np.asarray(ids, object), result.xy.astype(np.float64),
                       result.cluster.astype(np.int64), next_cluster or used)  # fmt: skip


def test_procrustes_undoes_a_turn_a_mirror_a_scale_and_a_shift():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((200, 2))
    a = np.deg2rad(37)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([1, -1])
    moved = 2.5 * ref @ R + [4.0, -7.0]
    T, disparity = procrustes(moved, ref)
    assert np.allclose(apply(T, moved), ref, atol=1e-4) and disparity < 1e-9
    _, unrelated = procrustes(rng.standard_normal((200, 2)), ref)
    assert unrelated > 0.8


def test_cluster_ids_follow_their_images_and_new_clusters_get_unused_ids():
    ids = [f"i{k}" for k in range(300)]
    old = np.repeat([0, 1, 2], 100)  # cluster 2 will split, 0 and 1 swap numbers
    prev = PreviousMap(np.asarray(ids, object), np.zeros((300, 2)), old, next_cluster=9)
    new = np.repeat([1, 0, 2], 100)
    new[250:] = 3  # half of old cluster 2
    new[:5] = -1
    labels, fates, nxt = match_clusters(new, ids, prev)
    assert (labels[5:100] == 0).all() and (labels[100:200] == 1).all()
    assert (labels[200:250] == 2).all() and (labels[250:] == 9).all() and nxt == 10
    assert fates == {"kept": [0, 1, 2], "new": [9], "retired": []}
    # a cluster that lost most of its images to noise keeps no id
    lost = new.copy()
    lost[200:300] = -1
    lost[200:230] = 2
    labels, fates, _ = match_clusters(lost, ids, prev)
    assert fates["retired"] == [2] and (labels[200:230] == 9).all()


@pytest.fixture(scope="module")
def last_month():
    """Five planted groups of 120 images and their map: the map a rerun must stay close to."""
    X, truth = _blobs(120, CENTRES, 2)
    ids = [f"i{k}" for k in range(len(X))]
    first = reduce_embeddings(X.copy(), SETTINGS)
    return X, truth, ids, first, _previous(ids, first)


def test_full_update_aligns_the_new_map_and_keeps_cluster_ids(last_month):
    X, truth, ids, first, prev = last_month
    # next month: 10% new images, the rows in another order, another UMAP seed
    Xn, _ = _blobs(12, CENTRES, 3)
    order = np.random.default_rng(4).permutation(len(X))
    X2 = np.concatenate([X[order], Xn])
    ids2 = [ids[i] for i in order] + [f"n{k}" for k in range(len(Xn))]
    update = MapUpdate(ids2, prev, SETTINGS)
    second = reduce_embeddings(X2.copy(), SETTINGS.but(seed=7), update=update)
    drift = update.result.drift
    assert drift["n_shared"] == len(X) and drift["n_new"] == len(Xn) and drift["n_removed"] == 0
    shared = second.xy[: len(X)]
    err = np.linalg.norm(shared - first.xy[order], axis=1)
    spread = np.linalg.norm(first.xy - first.xy.mean(0), axis=1).mean()
    assert np.median(err) < 0.5 * spread  # the same images sit in about the same places
    # within a 120-image blob, chance overlap of 10 map neighbours is 10/120
    assert drift["procrustes_disparity"] < 0.2 and drift["knn_overlap"] > 0.2
    # each planted group keeps the cluster id it had
    for g in range(len(CENTRES)):
        before = np.bincount(first.cluster[truth == g][first.cluster[truth == g] >= 0]).argmax()
        now = second.cluster[: len(X)][truth[order] == g]
        assert np.mean(now == before) > 0.8, g


def test_extend_keeps_old_points_and_places_new_ones_in_their_group(last_month):
    X, truth, ids, first, prev = last_month
    Xn, tn = _blobs(12, CENTRES, 5)
    keep = np.arange(10, len(X))  # 10 images withdrawn
    X2 = np.concatenate([X[keep], Xn])
    ids2 = [ids[i] for i in keep] + [f"n{k}" for k in range(len(Xn))]
    s = SETTINGS.but(update="extend")
    update = MapUpdate(ids2, prev, s)
    assert update.recompute  # small enough to check against a full recomputation
    out = reduce_embeddings(X2.copy(), s, update=update)
    assert np.array_equal(out.xy[: len(keep)], first.xy[keep])  # not moved at all
    assert np.array_equal(out.cluster[: len(keep)], first.cluster[keep])
    drift = update.result.drift
    assert drift["knn_overlap"] == 1.0 and drift["procrustes_disparity"] < 1e-9
    assert drift["n_removed"] == 10 and drift["extend"]["placed"] == len(Xn)
    assert drift["extend"]["unplaced"] == 0 and 0 <= drift["extend"]["knn_overlap_new_vs_full"] <= 1
    # each new image lands among its own group's old images, with that group's cluster id
    centre = {g: first.xy[truth == g].mean(0) for g in range(len(CENTRES))}
    for xy, g, c in zip(out.xy[len(keep) :], tn, out.cluster[len(keep) :], strict=True):
        assert min(centre, key=lambda h: np.linalg.norm(xy - centre[h])) == g
        group = first.cluster[truth == g]
        assert c == np.bincount(group[group >= 0]).argmax()
    # past extend_check_max no UMAP runs at all
    assert not MapUpdate(ids2, prev, s.but(extend_check_max=10)).recompute


def test_movement_of_an_unchanged_map_is_none():
    xy = np.random.default_rng(0).standard_normal((100, 2))
    m = movement(xy, xy.copy(), 10)
    assert m["knn_overlap"] == pytest.approx(1.0) and m["procrustes_disparity"] < 1e-12
    assert movement(xy[:2], xy[:2], 10)["knn_overlap"] is None  # too few to say
