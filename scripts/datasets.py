"""Rule datasets: dataset-by-cluster tables and kNN mixing of the datasets, per model."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.datasets import compare_datasets, dataset_plot
from cxratlas.io import by_model, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
reduced = by_model(snakemake.input.reduced)
clusters, mixing = compare_datasets(reduced, snakemake.input.manifest)
write_frame(clusters, snakemake.output.clusters)
write_frame(mixing, snakemake.output.mixing)
dataset_plot(clusters, mixing, snakemake.output.figure)
