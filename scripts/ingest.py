"""Rule ingest: read every dataset by its preset, normalise, stack; record dropped rows."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.ingest.datasets import ingest_datasets
from cxratlas.io import write_frame, write_manifest
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
# the sample's images stay in the manifest though a file is missing now (see ingest_manifest)
sampled = frozenset(pd.read_parquet(snakemake.params.sample, columns=["image_id"])["image_id"])
manifest, dropped = ingest_datasets(snakemake.params.datasets, snakemake.params.privacy, sampled)
write_manifest(manifest, snakemake.output.manifest)
write_frame(dropped, snakemake.output.dropped)
