"""Rule disagreement: the images the models agree on least, with each model's neighbours, and
agreement (mutual kNN, CKA) against the sample size."""

from pathlib import Path

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.analysis.disagreement import (
    agreement_curve,
    curve_plot,
    disagreed_images,
    disagreement_sheet,
)
from cxratlas.io import atomic_path, by_model, read_embeddings, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p, out = snakemake.params, snakemake.output
models = list(p.models)
images = disagreed_images(snakemake.input.atlas, models, p.compare["disagreed_images"])
write_frame(images, out.images)
with atomic_path(out.sheet) as tmp:
    Path(tmp).write_bytes(disagreement_sheet(snakemake.input.atlas, models, images, 4))
atlas_ids = pd.read_parquet(snakemake.input.atlas, columns=["image_id"])["image_id"]
vectors = {}
for m, path in by_model(snakemake.input.embeddings).items():  # the atlas rows, in its order
    ids, X, _ = read_embeddings(path)
    vectors[m] = X[pd.Index(ids).get_indexer(atlas_ids)]
curve = agreement_curve({m: vectors[m] for m in models}, p.k, p.compare["curve_max"], p.seed)
write_frame(curve, out.curve)
curve_plot(curve, out.curve_figure)
