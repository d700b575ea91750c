"""Rule slices_across: every classifier's slices in one table (BH per classifier), the slices
that recur across models, which model's map isolates the errors, and the strips."""

from pathlib import Path

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.io import write_frame, write_tsv
from cxratlas.logs import setup_logging
from cxratlas.slices.across import combine
from cxratlas.slices.plots import isolation_figure
from cxratlas.slices.run import AcrossSettings
from cxratlas.slices.strips import write_strips

setup_logging(snakemake.log[0])
i, p, out = snakemake.input, snakemake.params, snakemake.output
settings = AcrossSettings.from_config({"slices": p.slices})
table, members, isolation = combine(
    [pd.read_parquet(f) for f in i.tables],
    [pd.read_parquet(f) for f in i.members],
    [pd.read_parquet(f) for f in i.findings],
    settings,
)
write_frame(table, out.table)
write_frame(members, out.members)
write_frame(isolation, out.isolation)
write_tsv(table[table["flagged"]], out.flagged, float_format="%.4g")
isolation_figure(isolation, out.figure)
strips = {Path(f).stem: f for f in out.strips}  # strips/<classifier>.png
write_strips(table, members, i.manifest, list(i.thumbnails), strips, settings)
