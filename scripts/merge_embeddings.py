"""Rule merge_embeddings: one file per model, shards in order."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.io import merge_shards
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
merge_shards(list(snakemake.input.shards), snakemake.output.embeddings)
