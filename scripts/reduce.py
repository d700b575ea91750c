"""Rule reduce: [PCA,] kNN graph, UMAP map, clusters and outlier scores for one model, laid onto
its last map (aligned, or extended with `reduce.update: extend`), with drift.json."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.io import ReduceSummary, reduced_table, write_json, write_parquet
from cxratlas.logs import setup_logging
from cxratlas.memory import peak_rss_mib, reset_peak, rss_mib
from cxratlas.reduce import ReduceSettings, reduce_embeddings
from cxratlas.reduce.backend import job_backend
from cxratlas.reduce.order import read_canonical
from cxratlas.reduce.stability import MapUpdate, PreviousMap

setup_logging(snakemake.log[0])
settings = ReduceSettings.from_config(snakemake.params.reduce)
model = snakemake.wildcards.model
if not job_backend(settings.backend).gpu:  # load the CPU libraries first: the peak is the data
    import faiss  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import umap  # noqa: F401
reset_peak()
base = rss_mib()
# in the canonical order (by a seeded hash of the image id), not the shard ledger's: the map
# depends on the images, not on the archive's history; reduced.parquet keeps that order
ids, X, meta = read_canonical(snakemake.input.embeddings, settings.rng_seed)
matrix_mib, dim = X.nbytes / 2**20, int(X.shape[1])
# the output is flagged update(): Snakemake leaves the last map in place for this job to read
update = MapUpdate(ids, PreviousMap.read(snakemake.output.reduced), settings)
result = reduce_embeddings(
    X, settings, inplace=True, update=update, ids=ids
)  # X is ours: normalised in place
del X
stable = update.result
write_parquet(reduced_table(ids, result, model, stable.next_cluster), snakemake.output.reduced)
write_json(stable.drift | {"model": model}, snakemake.output.drift)
peak = peak_rss_mib() - base
ReduceSummary(
    model=model,
    n=len(ids),
    dim=dim,
    clusters=int(len(set(result.cluster.tolist()) - {-1})),
    noise_fraction=float((result.cluster == -1).mean()),
    quality=result.quality,
    memory={
        "matrix_mib": matrix_mib,
        "peak_above_start_mib": peak,
        "peak_over_matrix": peak / matrix_mib if matrix_mib else None,
    },
    timings=result.timings,
).write(snakemake.output.summary)
