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
        "../envs/reduce.yaml"
    params:
        reduce=config["reduce"],
    script:
        "../scripts/reduce.py"
