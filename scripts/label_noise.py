"""Rule label_noise: flip a growing fraction of one finding's labels and re-run the analyses."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.label_noise import label_noise_plot, label_noise_sensitivity
from cxratlas.analysis.probes import ProbeSettings
from cxratlas.io import by_model, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
table, why = label_noise_sensitivity(
    by_model(snakemake.input.embeddings),
    by_model(snakemake.input.reduced),
    snakemake.input.manifest,
    p.noise["finding"],
    p.noise["fractions"],
    ProbeSettings.from_config({"probes": p.probes, "seed": p.seed}),
)
write_frame(table, snakemake.output.table)
label_noise_plot(table, snakemake.output.figure, why)
