"""Rule thumbnails: small images of one shard's images, shared by every model's view."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.atlas.thumbnails import make_thumbnails
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
make_thumbnails(
    pd.read_parquet(snakemake.params.sample),
    int(snakemake.wildcards.shard),
    snakemake.params.size,
    snakemake.output.thumbnails,
    max_skipped_fraction=snakemake.config["extract"][
        "max_skipped_fraction"
    ],  # not a param: no rerun
    decoded_path=snakemake.input.get("decoded"),
    encoding=snakemake.params.format,
)
