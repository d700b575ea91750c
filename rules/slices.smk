# Where each classifier fails: its predictions read and checked at plan time (rules/common.smk),
# one long table per classifier, its error slices in every model's space (one job per
# classifier, the models one after another), then one cheap job across them: BH, recurrence,
# isolation, strips.
# A new classifier plans only its own jobs and that last one: no embedding and no reduce job.
rule classifier:
    input:
        unpack(classifier_inputs),
        manifest="results/manifest.parquet",
    output:
        table="results/classifiers/{classifier}.parquet",
    log:
        "logs/classifiers/{classifier}.log",
    conda:
        "../envs/cpu.yaml"
    params:
        spec=classifier_spec,
        sample=SAMPLE,
        members=PLAN.members_sha,
        labels=label_policy(),
    script:
        "../scripts/classifier.py"


rule slices:
    input:
        classifier="results/classifiers/{classifier}.parquet",
        embeddings=expand("results/embeddings/{model}.parquet", model=MODELS),
        reduced=expand("results/reduce/{model}/reduced.parquet", model=MODELS),
        groups=expand("results/analysis/clusters/{model}/groups.parquet", model=MODELS),
        manifest="results/manifest.parquet",
    output:
        table="results/analysis/slices/{classifier}/slices.parquet",
        members="results/analysis/slices/{classifier}/members.parquet",
        findings="results/analysis/slices/{classifier}/findings.parquet",
    log:
        "logs/analysis/slices/{classifier}.log",
    benchmark:
        "logs/benchmarks/analysis/slices/{classifier}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: 4  # findings searched at once (Snakemake gives at most --cores)
    params:
        slices=slice_settings(SliceSettings.KEYS),
        seed=config["analysis"]["seed"],
        thresholds=classifier_thresholds,
    script:
        "../scripts/slices.py"


rule slices_across:
    input:
        tables=slice_jobs("slices.parquet"),
        members=slice_jobs("members.parquet"),
        findings=slice_jobs("findings.parquet"),
        manifest="results/manifest.parquet",
        thumbnails=expand("results/thumbnails/shard-{shard}.parquet", shard=SHARDS),
    output:
        table="results/analysis/slices/slices.parquet",
        members="results/analysis/slices/members.parquet",
        isolation="results/analysis/slices/isolation.parquet",
        flagged=report(
            "results/analysis/slices/flagged.tsv",
            caption="../report/slices.rst",
            category="Where classifiers fail",
        ),
        figure=report(
            "results/analysis/slices/isolation.png",
            caption="../report/slices_isolation.rst",
            category="Where classifiers fail",
        ),
        strips=[
            report(
                f"results/analysis/slices/strips/{c}.png",
                caption="../report/slices_strips.rst",
                category="Where classifiers fail",
            )
            for c in CLASSIFIERS
        ],
    log:
        "logs/analysis/slices/across.log",
    conda:
        "../envs/cpu.yaml"
    params:
        slices=slice_settings(AcrossSettings.KEYS),
    script:
        "../scripts/slices_across.py"
