"""Rule slices: one classifier's error slices in every model's space, every finding (mixture
slices found on one half of the patients and tested on the other, and the map's clusters)."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.io import by_model, classifier_of, write_frame
from cxratlas.logs import setup_logging
from cxratlas.slices.run import SliceSettings, SpaceFiles, load_context, slice_models

setup_logging(snakemake.log[0])
i, p, out = snakemake.input, snakemake.params, snakemake.output
settings = SliceSettings.from_config({"slices": p.slices, "seed": p.seed})
embeddings, reduced, groups = by_model(i.embeddings), by_model(i.reduced), by_model(i.groups)
files = [SpaceFiles(m, embeddings[m], reduced[m], groups[m]) for m in embeddings]
ctx = load_context(classifier_of(i.classifier), i.manifest, p.thresholds)
run = slice_models(ctx, files, pd.read_parquet(i.classifier), settings, snakemake.threads)
write_frame(run.table, out.table)
write_frame(run.members, out.members)
write_frame(run.findings, out.findings)
