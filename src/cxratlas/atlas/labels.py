"""Cluster names where a reader meets them in the atlas: a column per model, and labels drawn
on the model's map (Embedding Atlas `--labels`). The names come from the cluster report
(`analysis/naming.py`), which runs on the same reduced maps."""

from __future__ import annotations

import numpy as np
import pandas as pd

NOISE = "noise"


def label_column(cluster: np.ndarray, names: dict[str, str]) -> list[str]:
    """The name of each row's cluster (noise rows: "noise"), for the atlas."""
    return [names.get(f"c{k}", f"c{k}") if k >= 0 else NOISE for k in cluster]


def map_labels(x: np.ndarray, y: np.ndarray, cluster: np.ndarray, names: dict[str, str]):
    """Embedding Atlas `--labels` rows for one map: each cluster's name at its medoid-like
    centre (the member nearest the members' median, so a curved cluster's name sits on it),
    larger clusters first (`priority`). `content` repeats `text`: the CLI documents `text`, but
    the 0.26 frontend draws a label's `content` (and fails on a label without one)."""
    rows = []
    for k in np.unique(cluster[cluster >= 0]):
        idx = np.flatnonzero(cluster == k)
        cx, cy = np.median(x[idx]), np.median(y[idx])
        at = idx[np.argmin((x[idx] - cx) ** 2 + (y[idx] - cy) ** 2)]
        name = names.get(f"c{k}", f"c{k}")
        rows.append({"x": float(x[at]), "y": float(y[at]), "text": name, "content": name,
                     "level": 0, "priority": float(len(idx))})  # fmt: skip
    return pd.DataFrame(rows, columns=["x", "y", "text", "content", "level", "priority"])
