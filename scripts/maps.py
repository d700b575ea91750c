"""Rule maps: one model's map as a picture (clusters named, outliers ringed) and small multiples."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.analysis.maps import cluster_map, small_multiples
from cxratlas.io import read_cluster_names, read_manifest
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
model = snakemake.wildcards.model
reduced = pd.read_parquet(
    snakemake.input.reduced, columns=["image_id", "x", "y", "cluster", "outlier"]
)
manifest, columns = read_manifest(snakemake.input.manifest)
manifest = manifest.set_index("image_id").reindex(reduced["image_id"])
out = snakemake.output
cluster_map(reduced, read_cluster_names(snakemake.input.groups), model,
            out.clusters.removesuffix(".png"), snakemake.params.outlier_quantile)  # fmt: skip
small_multiples(reduced, manifest, columns.findings, columns.attributes, model,
                out.multiples.removesuffix(".png"))  # fmt: skip
