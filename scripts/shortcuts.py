"""Rule shortcuts: the bias and shortcut audit (attribute probes, subgroup AUROCs, confounding)."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.probes import ProbeSettings
from cxratlas.analysis.shortcut_plots import attribute_heatmap, confounding_plot, gap_heatmap
from cxratlas.analysis.shortcuts import ShortcutSettings, run_audit
from cxratlas.io import by_model, write_frame, write_tsv
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p, out = snakemake.params, snakemake.output
audit = run_audit(
    by_model(snakemake.input.embeddings),
    snakemake.input.manifest,
    p.probes["findings"],
    ProbeSettings.from_config({"probes": p.probes, "seed": p.seed}),
    ShortcutSettings.from_config(p.shortcuts),
)
write_frame(audit.attributes, out.attributes)
write_frame(audit.subgroups, out.subgroups)
write_frame(audit.gaps, out.gaps)
write_tsv(audit.confounding, out.confounding, float_format="%.3f")
attribute_heatmap(audit.attributes, out.attribute_figure)
gap_heatmap(audit.gaps, out.gap_figure)
confounding_plot(audit.confounding, out.confounding_figure)
