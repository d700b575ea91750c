"""The same model across datasets: does it mix the datasets or carve them apart?

Per model: a dataset-by-cluster table (counts, each dataset's share of a cluster and each
cluster's share of a dataset), and mixing figures: ARI/NMI between clusters and datasets, and
the fraction of each point's kNN from its own dataset against what random mixing gives,
(n_d - 1) / (n - 1). `separation` = (observed - expected) / (1 - expected): 0 mixed, 1 apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from cxratlas.figures import save_figure


def same_dataset_fraction(neighbours: np.ndarray, dataset: np.ndarray) -> np.ndarray:
    """Per point, the share of its neighbours (self and missing (-1) left out) in its dataset."""
    rows = np.arange(len(neighbours))[:, None]
    valid = (neighbours >= 0) & (neighbours != rows)
    same = (dataset[np.where(valid, neighbours, 0)] == dataset[:, None]) & valid
    counts = valid.sum(axis=1)
    return np.where(counts > 0, same.sum(axis=1) / np.maximum(counts, 1), np.nan)


def dataset_mixing(
    model: str, neighbours: np.ndarray, cluster: np.ndarray, dataset: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(clusters table, mixing table) for one model; one mixing row per dataset plus `all`."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = np.where(cluster >= 0, np.char.add("c", cluster.astype(str)), "noise")
    counts = pd.crosstab(pd.Series(labels, name="cluster"), pd.Series(dataset, name="dataset"))
    long = counts.stack().rename("n").reset_index()
    long = long[long["n"] > 0]
    long["share_in_cluster"] = long["n"] / long.groupby("cluster")["n"].transform("sum")
    long["share_of_dataset"] = long["n"] / long.groupby("dataset")["n"].transform("sum")
    long.insert(0, "model", model)

    n = len(dataset)
    sizes = pd.Series(dataset).value_counts()
    observed = same_dataset_fraction(neighbours, dataset)
    expected = (sizes.reindex(dataset).to_numpy() - 1) / max(n - 1, 1)
    rows = []
    for name in ["all", *sorted(sizes.index)]:
        mask = np.ones(n, bool) if name == "all" else dataset == name
        obs, exp = float(np.nanmean(observed[mask])), float(expected[mask].mean())
        rows.append(
            {
                "model": model,
                "dataset": name,
                "n": int(mask.sum()),
                "same_dataset_knn": obs,
                "expected_if_mixed": exp,
                "separation": (obs - exp) / (1 - exp) if exp < 1 else np.nan,
                "ari_cluster_dataset": adjusted_rand_score(dataset, labels),
                "nmi_cluster_dataset": normalized_mutual_info_score(dataset, labels),
            }
        )
    return long.reset_index(drop=True), pd.DataFrame(rows)


def compare_datasets(
    reduced: dict[str, str], manifest_path: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables for every model, over the images each model reduced."""
    from cxratlas.reduce.neighbours import aligned_neighbours

    manifest = pd.read_parquet(manifest_path, columns=["image_id", "dataset"])
    by_id = manifest.set_index("image_id")["dataset"]
    tables, mixing = [], []
    for model, path in reduced.items():
        t = pq.read_table(path)
        ids = pd.Index(t.column("image_id").to_pylist())
        neighbours, _ = aligned_neighbours(t, ids)
        dataset = by_id.reindex(ids).fillna("unknown").astype(str).to_numpy()
        a, b = dataset_mixing(model, neighbours, t.column("cluster").to_numpy(), dataset)
        tables.append(a)
        mixing.append(b)
    return pd.concat(tables, ignore_index=True), pd.concat(mixing, ignore_index=True)


def dataset_plot(clusters: pd.DataFrame, mixing: pd.DataFrame, out_path: str) -> None:
    """Per model, one stacked bar per cluster: the datasets its images come from."""
    from cxratlas.analysis.plots import legend_beside, plt

    models = list(dict.fromkeys(clusters["model"]))
    datasets = sorted(clusters["dataset"].unique())
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(models), 1, figsize=(8, 1.2 + 1.6 * len(models)), squeeze=False)
    for ax, m in zip(axes[:, 0], models, strict=True):
        sub = clusters[clusters["model"] == m].pivot_table(
            index="cluster", columns="dataset", values="n", fill_value=0
        )
        sub = sub.loc[sub.sum(axis=1).sort_values(ascending=False).index]
        left = np.zeros(len(sub))
        for j, d in enumerate(datasets):
            values = sub[d].to_numpy() if d in sub else np.zeros(len(sub))
            ax.barh(range(len(sub)), values, left=left, color=colours(j % 10), label=d)
            left += values
        ax.set_yticks(range(len(sub)), sub.index, fontsize=7)
        ax.invert_yaxis()
        sep = mixing[(mixing["model"] == m) & (mixing["dataset"] == "all")]["separation"]
        ax.set_title(f"{m}: dataset separation {float(sep.iloc[0]):.2f} (0 mixed, 1 apart)")
        ax.set_xlabel("images")
    legend_beside(axes[0, 0], title="dataset")
    fig.tight_layout()
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)
