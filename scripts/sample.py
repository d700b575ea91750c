"""Rule sample: the one shared sample of image ids, with its shard index."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.io import write_frame
from cxratlas.logs import setup_logging
from cxratlas.sample import draw_sample

setup_logging(snakemake.log[0])
p = snakemake.params
sample = draw_sample(
    pd.read_parquet(snakemake.input.manifest),
    n=p.n,
    seed=p.seed,
    stratify_by=p.stratify_by,
    shard_size=p.shard_size,
    n_shards_planned=p.n_shards,
)
write_frame(sample, snakemake.output.sample)
