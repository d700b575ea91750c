"""Rule summary: the study's findings first (model paragraphs, ranked leads, checks)."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.leads import leads_table
from cxratlas.analysis.summary import SummaryInputs, build_summary, write_landing, write_markdown
from cxratlas.io import write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
models = list(p.models)


def per_model(paths):
    """`expand` over MODELS keeps their order: pair each file with its model."""
    return dict(zip(models, map(str, paths), strict=True))


inputs = SummaryInputs(
    models=models, confounding=i.confounding, gaps=i.gaps, subgroups=i.subgroups,
    attributes=i.attributes, probes=i.probes, balance=i.balance,
    compare_models=i.compare_models, manifest=i.manifest,
    enrichment=per_model(i.enrichment), groups=per_model(i.groups),
    stability=per_model(i.stability), reduced=per_model(i.reduced), maps=per_model(i.maps),
    thumbnails=list(i.thumbnails), disagreement=i.get("disagreement"),
    label_noise=i.get("label_noise"), outlier_quantile=p.clusters["outlier_quantile"],
    max_noise=p.clusters["max_noise"],
)  # fmt: skip
summary = build_summary(inputs)
write_frame(leads_table(summary.leads), snakemake.output.leads)
write_markdown(summary, snakemake.output.markdown, snakemake.output.strips)
write_landing(summary, snakemake.output.landing)
