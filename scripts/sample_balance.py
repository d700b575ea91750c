"""Rule sample_balance: the sample against the archive ("Table 1", SMDs, a Love plot)."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.analysis.representativeness import love_plot, sample_balance, warn_imbalance
from cxratlas.io import read_manifest, write_frame, write_tsv
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
manifest, columns = read_manifest(snakemake.input.manifest)
sample = pd.read_parquet(snakemake.params.sample, columns=["image_id"])
table = sample_balance(manifest.set_index("image_id"), pd.Index(sample["image_id"]),
                       columns.findings, columns.attributes)  # fmt: skip
warn_imbalance(table, list(snakemake.params.strata))
write_frame(table, snakemake.output.table)
write_tsv(table, snakemake.output.tsv, float_format="%.3f")
love_plot(table, snakemake.output.figure)
