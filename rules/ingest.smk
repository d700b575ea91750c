rule demo_data:
    output:
        manifest=f"{DEMO_DIR}/manifest.csv",
        images=directory(f"{DEMO_DIR}/images"),
    log:
        "logs/demo_data.log",
    benchmark:
        "logs/benchmarks/demo_data.tsv"
    conda:
        "../envs/ingest.yaml"
    params:
        demo=config["dataset"]["demo"],
    script:
        "../scripts/demo_data.py"


rule ingest:
    input:
        dataset_files(),
    output:
        manifest="results/manifest.parquet",
        dropped="results/ingest/dropped.parquet",
    log:
        "logs/ingest.log",
    benchmark:
        "logs/benchmarks/ingest.tsv"
    conda:
        "../envs/ingest.yaml"
    params:
        datasets=DATASETS,
        privacy=config["privacy"],
    script:
        "../scripts/ingest.py"
