"""Rule ingest: validate and normalise the manifest; record dropped rows."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.io import write_frame
from cxratlas.logs import setup_logging
from cxratlas.manifest import ingest_manifest

setup_logging(snakemake.log[0])
p = snakemake.params
manifest, dropped = ingest_manifest(
    snakemake.input.manifest,
    image_root=p.image_root,
    columns=p.columns,
    label_columns=p.label_columns,
    on_missing_image=p.on_missing_image,
)
write_frame(manifest, snakemake.output.manifest)
write_frame(dropped, snakemake.output.dropped)
