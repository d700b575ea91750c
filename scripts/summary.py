"""Rule summary: the study's findings first (how the models compare, the models one by one,
ranked leads, checks, maps, terms)."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)
import pandas as pd

from cxratlas.analysis.leads import leads_table
from cxratlas.analysis.summary import (
    Block,
    SummaryInputs,
    build_summary,
    write_landing,
    write_markdown,
)
from cxratlas.io import by_model, write_frame
from cxratlas.logs import setup_logging
from cxratlas.slices.leads import classifier_lines, error_slice_leads

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
inputs = SummaryInputs(
    models=list(p.models), confounding=i.confounding, gaps=i.gaps, subgroups=i.subgroups,
    attributes=i.attributes, probes=i.probes, differences=i.differences, balance=i.balance,
    compare_pairs=i.compare_pairs, compare_models=i.compare_models,
    compare_clusters=i.compare_clusters, manifest=i.manifest,
    # each per-model file names its model (footer or PNG chunk): never paired by position
    enrichment=by_model(i.enrichment), groups=by_model(i.groups),
    stability=by_model(i.stability), reduced=by_model(i.reduced), maps=by_model(i.maps),
    thumbnails=list(i.thumbnails), disagreement=i.get("disagreement"),
    label_noise=i.get("label_noise"),
    subgroup_placements=list(i.get("subgroup_placements", [])),
    subgroup_performances=list(i.get("subgroup_performances", [])),
    outlier_quantile=p.clusters["outlier_quantile"],
    max_noise=p.clusters["max_noise"],
)  # fmt: skip
# where a classifier fails: its flagged slices join the leads (kind error_slice)
slices = pd.read_parquet(i.slices)
extra = error_slice_leads(slices, pd.read_parquet(i.slice_members))
# every classifier audited, flagged or not: a search that found nothing says what it searched
audited = [
    Block("h2", "Where classifiers fail", anchor="classifiers"),
    Block("list", rows=classifier_lines(slices, pd.read_parquet(i.slice_isolation))),
]
blocks, leads = build_summary(inputs, extra, audited)
write_frame(leads_table(leads), snakemake.output.leads)
write_markdown(blocks, snakemake.output.markdown, snakemake.output.strips)
write_landing(blocks, snakemake.output.landing)
