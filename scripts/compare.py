"""Rule compare: pairwise kNN Jaccard, linear CKA, cluster ARI/NMI; per-model trustworthiness."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.compare import compare_models
from cxratlas.analysis.plots import agreement_heatmaps
from cxratlas.io import ReduceSummary, by_model, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
p = snakemake.params
summaries = [ReduceSummary.read(path) for path in snakemake.input.summaries]
trust = {s.model: s.trustworthiness for s in summaries}  # each summary names its model
pairs, per_model = compare_models(
    by_model(snakemake.input.reduced),
    by_model(snakemake.input.embeddings),
    trust=trust,
    cka_sample=p.cka_sample,
    seed=p.seed,
)
write_frame(pairs, snakemake.output.pairs)
write_frame(per_model, snakemake.output.models)
agreement_heatmaps(pairs, list(p.models), snakemake.output.figure)
