"""Rule subgroups_overview: one row per subgroup and model (size, compactness, top cluster)."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.subgroup_report import overview
from cxratlas.io import write_tsv
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
table = overview(list(snakemake.input.placement), list(snakemake.input.members))
write_tsv(table, snakemake.output.table, float_format="%.4g")
