"""Rule atlas: the wide Parquet file and the linked-view state for Embedding Atlas."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.atlas.table import SliceFiles, build_atlas
from cxratlas.io import by_model, write_json
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
summary = build_atlas(
    snakemake.params.sample,
    snakemake.input.manifest,
    by_model(snakemake.input.reduced),
    list(snakemake.input.thumbnails),
    snakemake.output.atlas,
    snakemake.output.state,
    metadata_columns=p.metadata_columns,
    ids_hashed=p.ids_hashed,
    names=by_model(snakemake.input.names),
    slices=SliceFiles(
        snakemake.input.slices, snakemake.input.slice_members, tuple(snakemake.input.classifiers)
    ),
)
write_json(summary, snakemake.output.summary)
