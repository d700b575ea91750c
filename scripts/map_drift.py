"""Rule map_drift: how far each model's map moved since the last run, one row per model."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.io import write_tsv
from cxratlas.logs import setup_logging
from cxratlas.reduce.stability import drift_table

setup_logging(snakemake.log[0])
write_tsv(drift_table(list(snakemake.input.drift)), snakemake.output.table)
