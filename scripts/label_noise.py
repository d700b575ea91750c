"""Rule label_noise: flip a growing fraction of one finding's labels, in several seeded draws,
and re-run the probe (scored against the original and the flipped labels) and the clusters."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.label_noise import NoiseSettings, label_noise_plot, label_noise_sensitivity
from cxratlas.io import by_model, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
table, why = label_noise_sensitivity(
    by_model(snakemake.input.embeddings),
    by_model(snakemake.input.reduced),
    snakemake.input.manifest,
    NoiseSettings.from_config(p.noise, p.probes, p.seed),
)
write_frame(table, snakemake.output.table)
label_noise_plot(table, snakemake.output.figure, why)
