"""Rule decode_shard: decode one shard's images, convert them to 8 bits one way (an `intensity`
key) and downsize them, once for every model that converts them that way."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.embed.decode_cache import write_decode_cache
from cxratlas.ingest.intensity import Intensity
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
    intensity=Intensity.from_entry("decode cache", snakemake.params.intensity),
)
