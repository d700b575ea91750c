"""Rule cluster_report: per-cluster enrichment, group descriptions and a contact sheet."""

from pathlib import Path

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.enrichment import cluster_report
from cxratlas.io import atomic_path, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
c = snakemake.params.clusters
table, groups, sheet = cluster_report(
    snakemake.input.reduced,
    snakemake.input.manifest,
    list(snakemake.input.thumbnails),
    sample_k=c["sample_images"],
    seed=snakemake.params.seed,
    outlier_quantile=c["outlier_quantile"],
    model=snakemake.wildcards.model,
)
write_frame(table, snakemake.output.enrichment, model=snakemake.wildcards.model)
write_frame(groups, snakemake.output.groups, model=snakemake.wildcards.model)  # cluster names
with atomic_path(snakemake.output.sheet) as tmp:
    Path(tmp).write_bytes(sheet)
