rule eda:
    input:
        manifest="results/manifest.parquet",
    output:
        table="results/analysis/eda/counts.parquet",
        figure=report(
            "results/analysis/eda/eda.png",
            caption="../report/eda.rst",
            category="Manifest",
        ),
    log:
        "logs/analysis/eda.log",
    benchmark:
        "logs/benchmarks/analysis/eda.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/eda.py"


rule sample_balance:
    input:
        manifest="results/manifest.parquet",
    output:
        table="results/analysis/sample/balance.parquet",
        tsv=report(
            "results/analysis/sample/balance.tsv",
            caption="../report/sample_balance.rst",
            category="Manifest",
        ),
        figure=report(
            "results/analysis/sample/love_plot.png",
            caption="../report/sample_balance.rst",
            category="Manifest",
        ),
    log:
        "logs/analysis/sample_balance.log",
    conda:
        "../envs/cpu.yaml"
    params:
        sample=SAMPLE,
        members=PLAN.members_sha,
        strata=config["sample"]["stratify_by"],
    script:
        "../scripts/sample_balance.py"


rule compare:
    input:
        reduced=expand("results/reduce/{model}/reduced.parquet", model=MODELS),
        embeddings=expand("results/embeddings/{model}.parquet", model=MODELS),
        summaries=expand("results/reduce/{model}/summary.json", model=MODELS),
        manifest="results/manifest.parquet",
    output:
        pairs="results/analysis/compare/pairs.parquet",
        models="results/analysis/compare/models.parquet",
        clusters="results/analysis/compare/clusters.parquet",
        figure=report(
            "results/analysis/compare/agreement.png",
            caption="../report/compare.rst",
            category="Cross-model comparison",
        ),
    log:
        "logs/analysis/compare.log",
    benchmark:
        "logs/benchmarks/analysis/compare.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        models=MODELS,
        compare=config["analysis"]["compare"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/compare.py"


rule disagreement:
    input:
        atlas="results/atlas/atlas.parquet",
        embeddings=expand("results/embeddings/{model}.parquet", model=MODELS),
    output:
        images="results/analysis/disagreement/images.parquet",
        curve="results/analysis/disagreement/curve.parquet",
        sheet=report(
            "results/analysis/disagreement/contact_sheet.png",
            caption="../report/disagreement.rst",
            category="Cross-model comparison",
        ),
        curve_figure=report(
            "results/analysis/disagreement/curve.png",
            caption="../report/agreement_curve.rst",
            category="Cross-model comparison",
        ),
    log:
        "logs/analysis/disagreement.log",
    conda:
        "../envs/cpu.yaml"
    params:
        models=MODELS,
        k=config["reduce"]["k"],
        compare=config["analysis"]["compare"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/disagreement.py"


rule probes:
    input:
        embeddings=expand("results/embeddings/{model}.parquet", model=MODELS),
        manifest="results/manifest.parquet",
    output:
        table="results/analysis/probes/probes.parquet",
        scores="results/analysis/probes/scores.parquet",
        differences="results/analysis/probes/differences.parquet",
        figure=report(
            "results/analysis/probes/probes.png",
            caption="../report/probes.rst",
            category="Linear probes",
        ),
    log:
        "logs/analysis/probes.log",
    benchmark:
        "logs/benchmarks/analysis/probes.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        probes=config["analysis"]["probes"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/probes.py"


rule cluster_report:
    input:
        reduced="results/reduce/{model}/reduced.parquet",
        manifest="results/manifest.parquet",
        thumbnails=expand("results/thumbnails/shard-{shard}.parquet", shard=SHARDS),
    output:
        enrichment="results/analysis/clusters/{model}/enrichment.parquet",
        groups="results/analysis/clusters/{model}/groups.parquet",
        sheet=report(
            "results/analysis/clusters/{model}/contact_sheet.png",
            caption="../report/clusters.rst",
            category="Clusters",
            subcategory="{model}",
        ),
    log:
        "logs/analysis/clusters/{model}.log",
    conda:
        "../envs/cpu.yaml"
    params:
        clusters=config["analysis"]["clusters"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/cluster_report.py"


rule maps:
    input:
        reduced="results/reduce/{model}/reduced.parquet",
        groups="results/analysis/clusters/{model}/groups.parquet",
        manifest="results/manifest.parquet",
    output:
        clusters=report(
            "results/analysis/maps/{model}/clusters.png",
            caption="../report/maps.rst",
            category="Maps",
            subcategory="{model}",
        ),
        multiples=report(
            "results/analysis/maps/{model}/multiples.png",
            caption="../report/maps.rst",
            category="Maps",
            subcategory="{model}",
        ),
        svg=multiext("results/analysis/maps/{model}/", "clusters.svg", "multiples.svg"),
    log:
        "logs/analysis/maps/{model}.log",
    conda:
        "../envs/cpu.yaml"
    params:
        outlier_quantile=config["analysis"]["clusters"]["outlier_quantile"],
    script:
        "../scripts/maps.py"


rule cluster_stability:
    input:
        reduced="results/reduce/{model}/reduced.parquet",
    output:
        table="results/analysis/clusters/{model}/stability.parquet",
        figure=report(
            "results/analysis/clusters/{model}/stability.png",
            caption="../report/stability.rst",
            category="Clusters",
            subcategory="{model}",
        ),
    log:
        "logs/analysis/clusters/{model}.stability.log",
    conda:
        "../envs/cpu.yaml"
    params:
        cluster=config["reduce"]["cluster"],
        max_noise=config["analysis"]["clusters"]["max_noise"],
    script:
        "../scripts/cluster_stability.py"


rule shortcuts:
    input:
        embeddings=expand("results/embeddings/{model}.parquet", model=MODELS),
        manifest="results/manifest.parquet",
    output:
        attributes="results/analysis/shortcuts/attributes.parquet",
        subgroups="results/analysis/shortcuts/subgroups.parquet",
        gaps="results/analysis/shortcuts/gaps.parquet",
        confounding=report(
            "results/analysis/shortcuts/confounding.tsv",
            caption="../report/shortcuts_confounding.rst",
            category="Bias and shortcuts",
        ),
        attribute_figure=report(
            "results/analysis/shortcuts/attributes.png",
            caption="../report/shortcuts_attributes.rst",
            category="Bias and shortcuts",
        ),
        gap_figure=report(
            "results/analysis/shortcuts/gaps.png",
            caption="../report/shortcuts_gaps.rst",
            category="Bias and shortcuts",
        ),
        confounding_figure=report(
            "results/analysis/shortcuts/confounding.png",
            caption="../report/shortcuts_confounding.rst",
            category="Bias and shortcuts",
        ),
    log:
        "logs/analysis/shortcuts.log",
    benchmark:
        "logs/benchmarks/analysis/shortcuts.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        probes=config["analysis"]["probes"],
        shortcuts=config["analysis"]["shortcuts"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/shortcuts.py"


rule label_noise:
    input:
        embeddings=expand("results/embeddings/{model}.parquet", model=MODELS),
        reduced=expand("results/reduce/{model}/reduced.parquet", model=MODELS),
        manifest="results/manifest.parquet",
    output:
        table="results/analysis/label_noise/label_noise.parquet",
        figure=report(
            "results/analysis/label_noise/label_noise.png",
            caption="../report/label_noise.rst",
            category="Label noise",
        ),
    log:
        "logs/analysis/label_noise.log",
    conda:
        "../envs/cpu.yaml"
    params:
        noise=config["analysis"]["label_noise"],
        probes=config["analysis"]["probes"],
        seed=config["analysis"]["seed"],
    script:
        "../scripts/label_noise.py"


rule datasets:
    input:
        reduced=expand("results/reduce/{model}/reduced.parquet", model=MODELS),
        manifest="results/manifest.parquet",
    output:
        clusters="results/analysis/datasets/clusters.parquet",
        mixing="results/analysis/datasets/mixing.parquet",
        figure=report(
            "results/analysis/datasets/datasets.png",
            caption="../report/datasets.rst",
            category="Cross-dataset comparison",
        ),
    log:
        "logs/analysis/datasets.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/datasets.py"


rule quality:
    input:
        dropped="results/ingest/dropped.parquet",
        reports=expand(
            "results/embeddings/{model}/shard-{shard}.report.json",
            model=MODELS,
            shard=SHARDS,
        ),
    output:
        table="results/analysis/quality/skipped.parquet",
        summary=report(
            "results/analysis/quality/summary.tsv",
            caption="../report/quality.rst",
            category="Data quality",
        ),
        figure=report(
            "results/analysis/quality/skipped.png",
            caption="../report/quality.rst",
            category="Data quality",
        ),
    log:
        "logs/analysis/quality.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quality.py"


rule summary:
    input:
        unpack(summary_optional),
        confounding="results/analysis/shortcuts/confounding.tsv",
        gaps="results/analysis/shortcuts/gaps.parquet",
        subgroups="results/analysis/shortcuts/subgroups.parquet",
        attributes="results/analysis/shortcuts/attributes.parquet",
        probes="results/analysis/probes/probes.parquet",
        differences="results/analysis/probes/differences.parquet",
        balance="results/analysis/sample/balance.parquet",
        compare_pairs="results/analysis/compare/pairs.parquet",
        compare_models="results/analysis/compare/models.parquet",
        compare_clusters="results/analysis/compare/clusters.parquet",
        slices="results/analysis/slices/slices.parquet",
        slice_members="results/analysis/slices/members.parquet",
        slice_isolation="results/analysis/slices/isolation.parquet",
        manifest="results/manifest.parquet",
        enrichment=expand(
            "results/analysis/clusters/{model}/enrichment.parquet", model=MODELS
        ),
        groups=expand("results/analysis/clusters/{model}/groups.parquet", model=MODELS),
        stability=expand(
            "results/analysis/clusters/{model}/stability.parquet", model=MODELS
        ),
        reduced=expand("results/reduce/{model}/reduced.parquet", model=MODELS),
        maps=expand("results/analysis/maps/{model}/clusters.png", model=MODELS),
        thumbnails=expand("results/thumbnails/shard-{shard}.parquet", shard=SHARDS),
    output:
        markdown="results/summary/summary.md",
        landing="results/summary/summary.rst",
        leads="results/summary/leads.parquet",
        strips=directory("results/summary/strips"),
    log:
        "logs/summary.log",
    conda:
        "../envs/cpu.yaml"
    params:
        models=MODELS,
        clusters=config["analysis"]["clusters"],
    script:
        "../scripts/summary.py"
