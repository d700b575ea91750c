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
        manifest=manifest_source(),
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
        image_root=image_root,
        columns=config["dataset"]["columns"],
        label_columns=config["dataset"]["label_columns"],
        on_missing_image=config["dataset"]["on_missing_image"],
    script:
        "../scripts/ingest.py"
