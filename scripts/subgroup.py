"""Rule subgroup: one subgroup (an atlas selection, an id list or a query) against the rest:
Table 1, its place in every model's space, every classifier inside vs outside, enrichment, a
captioned contact sheet."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.subgroup_members import SubgroupSpec
from cxratlas.analysis.subgroup_report import SubgroupSettings, run_subgroup
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
spec = SubgroupSpec.of(snakemake.wildcards.name, snakemake.params.subgroup)
inputs = {
    "atlas": snakemake.input.atlas,
    "manifest": snakemake.input.manifest,
    "probe_scores": snakemake.input.probe_scores,
    "classifiers": list(snakemake.input.classifiers),
}
settings = SubgroupSettings.from_config(snakemake.params.analysis)
run_subgroup(spec, inputs, settings, dict(snakemake.output.items()))
