"""Rule probes: linear-probe AUROC per finding and model, patient-level folds, bootstrap CIs."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.plots import probe_plot
from cxratlas.analysis.probes import ProbeSettings, run_probes
from cxratlas.io import by_model, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
table = run_probes(
    by_model(snakemake.input.embeddings),
    snakemake.input.manifest,
    findings=p.probes["findings"],
    settings=ProbeSettings.from_config({"probes": p.probes, "seed": p.seed}),
)
write_frame(table, snakemake.output.table)
probe_plot(table, snakemake.output.figure)
