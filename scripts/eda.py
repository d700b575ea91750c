"""Rule eda: counts of the whole manifest and their figure."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.analysis.eda import eda_figure, eda_table
from cxratlas.io import write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
table = eda_table(pd.read_parquet(snakemake.input.manifest))
write_frame(table, snakemake.output.table)
eda_figure(table, snakemake.output.figure)
