rule reduce:
    input:
        embeddings="results/embeddings/{model}.parquet",
    output:
        # update(): not deleted before the job, which reads it as the last map to align onto
        reduced=update("results/reduce/{model}/reduced.parquet"),
        summary="results/reduce/{model}/summary.json",
        drift="results/reduce/{model}/drift.json",
    log:
        "logs/reduce/{model}.log",
    benchmark:
        "logs/benchmarks/reduce/{model}.tsv"
    conda:
        f"../{REDUCE_BACKEND.env}"
    resources:
        gpu=int(REDUCE_BACKEND.gpu),
    params:
        reduce=config["reduce"],
    script:
        "../scripts/reduce.py"


rule map_drift:
    input:
        drift=expand("results/reduce/{model}/drift.json", model=MODELS),
    output:
        table=report(
            "results/reduce/drift.tsv",
            caption="../report/drift.rst",
            category="Data quality",
        ),
    log:
        "logs/reduce/drift.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/map_drift.py"
