"""Rule label_noise: flip a growing fraction of one finding's labels and re-run the analyses."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.label_noise import label_noise_plot, label_noise_sensitivity
from cxratlas.io import write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
table, why = label_noise_sensitivity(
    dict(zip(p.models, snakemake.input.embeddings, strict=True)),
    dict(zip(p.models, snakemake.input.reduced, strict=True)),
    snakemake.input.manifest,
    p.noise["finding"],
    p.noise["fractions"],
    folds=p.folds,
    seed=p.seed,
    min_count=p.min_count,
)
write_frame(table, snakemake.output.table)
label_noise_plot(table, snakemake.output.figure, why)
