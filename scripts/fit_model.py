"""Rule fit_model: fit a model's data-dependent state (the pixel baseline's PCA) on the sample."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.embed.models import embedder_class, intensity_of
from cxratlas.ingest.imaging import ImageLoadError, load_gray8
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
entry, seed = snakemake.params.entry, snakemake.params.seed
sample = pd.read_parquet(snakemake.params.sample)
kind = embedder_class(snakemake.wildcards.model, entry)
intensity = intensity_of(snakemake.wildcards.model, entry)
rows = kind.fit_rows(sample, entry)  # by id (the lowest sample ranks), not by ledger position


def images():
    for path in rows["path"]:
        try:
            yield load_gray8(path, intensity)
        except ImageLoadError:
            continue  # the shard jobs record bad images


kind.fit(snakemake.wildcards.model, entry, images(), seed, snakemake.output.state)
