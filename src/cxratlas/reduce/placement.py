"""Placing images on a map from their kNN neighbours already on it.

An image is put at the distance-weighted mean (weights 1 / cosine distance) of the positions of
its graph neighbours placed before, and takes their weighted majority cluster (noise included;
a tie goes to the smaller label), in rounds until every image is placed. Used twice: by
`reduce.update: extend` (new images onto the last map, reduce.stability) and by the landmark
layout (the images past the landmarks onto the landmarks' map, reduce.pipeline).
"""

from __future__ import annotations

import numpy as np

PLACE_ROUNDS = 50  # rounds of placing images next to placed ones (then: the map's centre)
BLOCK = 65536  # rows voted at once: bounds the (rows, k, k) comparison


def place_by_neighbours(
    xy: np.ndarray,
    cluster: np.ndarray,
    placed: np.ndarray,
    knn_idx: np.ndarray,
    knn_dist: np.ndarray,
) -> np.ndarray:
    """Fill in `xy` (float64, n x 2) and `cluster` (n) for the rows where `placed` is False, in
    place. Returns each row's round: 0 placed before, r >= 1 placed in round r, -1 with no path
    to a placed row in the graph (put at the map's centre, cluster left as it was)."""
    rounds = np.where(placed, 0, -1).astype(np.int32)
    nbr = knn_idx[:, 1:]
    w = 1.0 / np.maximum(knn_dist[:, 1:].astype(np.float64), 1e-6)
    for r in range(1, PLACE_ROUNDS + 1):
        todo = np.flatnonzero(rounds < 0)
        if not len(todo):
            break
        ok = rounds[nbr[todo]] >= 0  # neighbours placed before this round
        ready = ok.any(1)
        if not ready.any():
            break
        todo, ok = todo[ready], ok[ready]
        wt = w[todo] * ok
        xy[todo] = (wt[..., None] * xy[nbr[todo]]).sum(1) / wt.sum(1, keepdims=True)
        cluster[todo] = weighted_vote(cluster[nbr[todo]], wt)
        rounds[todo] = r
    lost = rounds < 0
    xy[lost] = xy[~lost].mean(0) if (~lost).any() else 0.0
    return rounds


def weighted_vote(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row, the label whose neighbours' weights sum highest (weight 0: not voting); ties
    go to the smaller label. Vectorised in blocks: a million rows in seconds, not a loop."""
    out = np.empty(len(labels), labels.dtype)
    for s in range(0, len(labels), BLOCK):
        lab, wt = labels[s : s + BLOCK], weights[s : s + BLOCK]
        same = lab[:, :, None] == lab[:, None, :]
        total = np.where(wt > 0, (same * wt[:, None, :]).sum(2), -np.inf)
        best = total.max(1, keepdims=True)
        big = np.iinfo(lab.dtype).max
        out[s : s + BLOCK] = np.where(total == best, lab, big).min(1)
    return out
