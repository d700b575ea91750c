"""Rule embed_shard: one (model, shard) job."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.embed.extract import extract_shard
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
extract_shard(
    pd.read_parquet(snakemake.input.sample),
    int(snakemake.wildcards.shard),
    snakemake.wildcards.model,
    p.entry,
    snakemake.output.shard,
    snakemake.output.report,
    state_path=snakemake.input.get("state"),
    num_workers=p.num_workers,
    device=p.device,
    max_skipped_fraction=p.max_skipped_fraction,
    decoded_path=snakemake.input.get("decoded"),
    storage=p.storage,
)
