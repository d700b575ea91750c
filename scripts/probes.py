"""Rule probes: linear-probe AUROC per finding and model (patient-level folds, bootstrap CIs),
their out-of-fold scores, and the paired bootstrap of every two models' difference."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.plots import probe_plot
from cxratlas.analysis.probe_differences import paired_differences
from cxratlas.analysis.probes import ProbeSettings, patient_groups, run_probes
from cxratlas.io import by_model, read_manifest, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p, out = snakemake.params, snakemake.output
settings = ProbeSettings.from_config({"probes": p.probes, "seed": p.seed})
run = run_probes(
    by_model(snakemake.input.embeddings),
    snakemake.input.manifest,
    findings=p.probes["findings"],
    settings=settings,
)
manifest = read_manifest(snakemake.input.manifest)[0].set_index("image_id")
groups = patient_groups(manifest, manifest.index)
differences = paired_differences(run.scores, run.table, groups, settings.bootstrap, settings.seed)
write_frame(run.table, out.table)
write_frame(run.scores, out.scores)
write_frame(differences, out.differences)
probe_plot(run.table, out.figure)
