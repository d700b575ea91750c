rule reduce:
    input:
        embeddings="results/embeddings/{model}.parquet",
    output:
        reduced="results/reduce/{model}/reduced.parquet",
        summary="results/reduce/{model}/summary.json",
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
