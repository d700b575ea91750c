"""Rule quality: every dropped row and skipped image, with totals, from the per-shard reports."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.quality import quality_plot, skipped_images
from cxratlas.io import write_frame, write_tsv
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
table, summary = skipped_images(snakemake.input.dropped, list(snakemake.input.reports))
write_frame(table, snakemake.output.table)
write_tsv(summary, snakemake.output.summary)
quality_plot(table, summary, snakemake.output.figure)
