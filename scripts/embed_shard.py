"""Rule embed_shard: one (model, shard) job."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.embed.extract import ExtractSettings, ShardFiles, extract_shard
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
# how the job runs (workers, device, JPEG decoder, skip tolerance) comes from the config, not
# from params: changing it must not re-embed shards that are done. `storage` changes the file,
# so it is a param.
settings = ExtractSettings.from_config(
    snakemake.config["extract"] | {"storage": snakemake.params.storage}
)
extract_shard(
    pd.read_parquet(snakemake.params.sample),
    int(snakemake.wildcards.shard),
    snakemake.wildcards.model,
    snakemake.params.entry,
    ShardFiles(
        shard=snakemake.output.shard,
        report=snakemake.output.report,
        state=snakemake.input.get("state"),
        decoded=snakemake.input.get("decoded"),
        earlier=snakemake.params.earlier,
    ),
    settings,
)
