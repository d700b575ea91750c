"""Rule reduce: kNN graph, UMAP map, clusters and outlier scores for one model."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.atlas import reduced_table
from cxratlas.io import read_embeddings, write_json, write_parquet
from cxratlas.logs import setup_logging
from cxratlas.reduce import reduce_embeddings

setup_logging(snakemake.log[0])
r = snakemake.params.reduce
ids, X, meta = read_embeddings(snakemake.input.embeddings)
result = reduce_embeddings(
    X,
    k=r["k"],
    seed=r["seed"],
    min_dist=r["umap"]["min_dist"],
    n_epochs=r["umap"]["n_epochs"],
    cluster_space=r["cluster"]["space"],
    cluster_dims=r["cluster"]["dims"],
    min_cluster_size=r["cluster"]["min_cluster_size"],
    min_samples=r["cluster"]["min_samples"],
)
write_parquet(reduced_table(ids, result), snakemake.output.reduced)
write_json(
    {
        "model": snakemake.wildcards.model,
        "n": len(ids),
        "dim": int(X.shape[1]),
        "clusters": int(len(set(result.cluster.tolist()) - {-1})),
        "noise_fraction": float((result.cluster == -1).mean()),
        **result.timings,
    },
    snakemake.output.summary,
)
