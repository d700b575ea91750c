# The datasets are read and validated while the workflow is read (rules/common.smk, the plan);
# this job writes the full manifest that the atlas and the analyses join: labels, attributes,
# DICOM header fields, hashed ids. Rerunning it never reruns an embedding job.


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
        sample=SAMPLE,
    script:
        "../scripts/ingest.py"
