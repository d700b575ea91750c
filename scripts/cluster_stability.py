"""Rule cluster_stability: HDBSCAN over a sweep of min_cluster_size on one model's map."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.analysis.cluster_stability import cluster_stability, stability_plot
from cxratlas.io import write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
c = snakemake.params.cluster
table, verdict = cluster_stability(
    pd.read_parquet(snakemake.input.reduced, columns=["x", "y", "cluster"]),
    snakemake.wildcards.model,
    c["min_cluster_size"],
    c["min_samples"],
    snakemake.params.max_noise,
    space=c["space"],
)
write_frame(table, snakemake.output.table, model=snakemake.wildcards.model)
stability_plot(table, verdict, snakemake.output.figure)
