"""Rule eda: counts of the whole manifest and their figure."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.eda import eda_figure, eda_table
from cxratlas.io import read_manifest, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
table = eda_table(read_manifest(snakemake.input.manifest)[0])
write_frame(table, snakemake.output.table)
eda_figure(table, snakemake.output.figure)
