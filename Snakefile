# CXR Atlas: compare how chest X-ray foundation models see the same images.
# plan (datasets validated, shared sample drawn, before any job) -> sharded embeddings per model
# -> kNN/UMAP/clusters -> atlas Parquet; the manifest (ingest) feeds the atlas and the analyses


from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: Path(workflow.basedir) / "config/config.yaml"


report: "report/workflow.rst"


# the config is checked first (cxratlas.config: a mistake in a few lines, naming its key)
include: "rules/common.smk"


wildcard_constraints:
    model="|".join(MODELS),
    shard=r"\d+",
    classifier="|".join(CLASSIFIERS),


include: "rules/ingest.smk"
include: "rules/embed.smk"
include: "rules/reduce.smk"
include: "rules/atlas.smk"
include: "rules/analysis.smk"
include: "rules/subgroups.smk"
include: "rules/slices.smk"


# a real run (not -n, --lint or --report), once Snakemake holds the directory's lock: write the
# sample ledger and the plan that the jobs read, and prune what left the sample
onstart:
    commit()


# what the run found, before anything else a user reads
onsuccess:
    say_findings()


rule all:
    default_target: True
    input:
        "results/summary/summary.md",
        "results/atlas/atlas.parquet",
        "results/atlas/state.json",
        "results/analysis/eda/counts.parquet",
        "results/analysis/sample/balance.parquet",
        "results/analysis/compare/pairs.parquet",
        "results/analysis/probes/probes.parquet",
        "results/analysis/slices/slices.parquet",
        # per classifier: one added after a run is a missing file here, which plans its jobs
        # (older predictions than the last run's tables did not, through the input set alone)
        expand("results/classifiers/{classifier}.parquet", classifier=CLASSIFIERS),
        expand(
            "results/analysis/slices/strips/{classifier}.png", classifier=CLASSIFIERS
        ),
        "results/analysis/shortcuts/confounding.tsv",
        "results/analysis/quality/skipped.parquet",
        "results/reduce/drift.tsv",
        analysis_label_noise(),
        analysis_disagreement(),
        analysis_datasets(),
        analysis_subgroups(),
        expand("results/analysis/clusters/{model}/enrichment.parquet", model=MODELS),
        expand("results/analysis/clusters/{model}/stability.parquet", model=MODELS),
        expand("results/analysis/maps/{model}/clusters.png", model=MODELS),
