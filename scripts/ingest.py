"""Rule ingest: read every dataset by its preset, normalise, stack; record dropped rows."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.ingest.datasets import ingest_datasets
from cxratlas.io import write_frame, write_manifest
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
manifest, dropped = ingest_datasets(snakemake.params.datasets, snakemake.params.privacy)
write_manifest(manifest, snakemake.output.manifest)
write_frame(dropped, snakemake.output.dropped)
