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
        "../envs/gpu.yaml"
        if config["reduce"]["backend"] == "gpu"
        else "../envs/cpu.yaml"
    resources:
        gpu=1 if config["reduce"]["backend"] == "gpu" else 0,
    params:
        reduce=config["reduce"],
    script:
        "../scripts/reduce.py"
