"""Rule decode_shard: decode, window and downsize one shard's images once for every model."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.embed.decode_cache import write_decode_cache
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
write_decode_cache(
    pd.read_parquet(snakemake.params.sample),
    int(snakemake.wildcards.shard),
    snakemake.params.max_side,
    snakemake.output.decoded,
    max_skipped_fraction=snakemake.config["extract"][
        "max_skipped_fraction"
    ],  # not a param: no rerun
)
