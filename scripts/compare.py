"""Rule compare: pairwise kNN overlap, linear CKA, cluster ARI/NMI with intervals; per-model
trustworthiness; which cluster of each model the others hold together."""

import _bootstrap  # noqa: F401  (puts ../src on sys.path)

from cxratlas.analysis.compare import CompareSettings, compare_models
from cxratlas.analysis.plots import agreement_heatmaps
from cxratlas.analysis.probes import patient_groups
from cxratlas.io import ReduceSummary, by_model, read_manifest, write_frame
from cxratlas.logs import setup_logging

setup_logging(snakemake.log[0])
i, out = snakemake.input, snakemake.output
summaries = [ReduceSummary.read(path) for path in i.summaries]
trust = {s.model: s.trustworthiness for s in summaries}  # each summary names its model
manifest = read_manifest(i.manifest)[0].set_index("image_id")
result = compare_models(
    by_model(i.reduced),
    by_model(i.embeddings),
    trust=trust,
    groups=patient_groups(manifest, manifest.index),
    settings=CompareSettings.from_config(snakemake.params.compare, snakemake.params.seed),
)
write_frame(result.pairs, out.pairs)
write_frame(result.models, out.models)
write_frame(result.clusters, out.clusters)
agreement_heatmaps(result.pairs, list(snakemake.params.models), out.figure)
