"""Rule reduce: [PCA,] kNN graph, UMAP map, clusters and outlier scores for one model."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.io import read_embeddings, reduced_table, write_json, write_parquet
from cxratlas.logs import setup_logging
from cxratlas.memory import peak_rss_mib, reset_peak, rss_mib
from cxratlas.reduce import KnnSettings, reduce_embeddings
from cxratlas.reduce.backend import job_backend

setup_logging(snakemake.log[0])
r = snakemake.params.reduce
if not job_backend(r["backend"]).gpu:  # load the CPU libraries first: the peak is the data
    import faiss  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import umap  # noqa: F401
reset_peak()
base = rss_mib()
ids, X, meta = read_embeddings(snakemake.input.embeddings)
matrix_mib = X.nbytes / 2**20
dim = int(X.shape[1])
result = reduce_embeddings(
    X,
    k=r["k"],
    seed=r["seed"],
    min_dist=r["umap"]["min_dist"],
    n_epochs=r["umap"]["n_epochs"],
    init=r["umap"]["init"],
    cluster_space=r["cluster"]["space"],
    cluster_dims=r["cluster"]["dims"],
    min_cluster_size=r["cluster"]["min_cluster_size"],
    min_samples=r["cluster"]["min_samples"],
    pca=r["pca"],
    knn=KnnSettings(**r["knn"]),
    backend=r["backend"],
    trust_sample=r["trust_sample"],
    inplace=True,  # X is ours: normalise it where it lies
)
del X
write_parquet(reduced_table(ids, result, snakemake.wildcards.model), snakemake.output.reduced)
peak = peak_rss_mib() - base
write_json(
    {
        "model": snakemake.wildcards.model,
        "n": len(ids),
        "dim": dim,
        "clusters": int(len(set(result.cluster.tolist()) - {-1})),
        "noise_fraction": float((result.cluster == -1).mean()),
        **result.quality,
        "memory": {
            "matrix_mib": matrix_mib,
            "peak_above_start_mib": peak,
            "peak_over_matrix": peak / matrix_mib if matrix_mib else None,
        },
        **result.timings,
    },
    snakemake.output.summary,
)
