rule decode_shard:
    input:
        sample="results/sample/sample.parquet",
    output:
        decoded=(
            temp("results/decoded/shard-{shard}.parquet")
            if config["extract"]["decode_cache_temp"]
            else "results/decoded/shard-{shard}.parquet"
        ),
    log:
        "logs/decode/shard-{shard}.log",
    benchmark:
        "logs/benchmarks/decode/shard-{shard}.tsv"
    conda:
        "../envs/ingest.yaml"
    params:
        max_side=config["extract"]["decode_cache"],
    script:
        "../scripts/decode_shard.py"


rule fit_model:
    input:
        sample="results/sample/sample.parquet",
    output:
        state="results/models/{model}/state.npz",
    log:
        "logs/fit_model/{model}.log",
    benchmark:
        "logs/benchmarks/fit_model/{model}.tsv"
    conda:
        "../envs/embed.yaml"
    params:
        entry=model_entry,
        seed=config["sample"]["seed"],
    script:
        "../scripts/fit_model.py"


rule embed_shard:
    input:
        unpack(model_state),
        unpack(decoded_shard),
        sample="results/sample/sample.parquet",
    output:
        shard="results/embeddings/{model}/shard-{shard}.parquet",
        report="results/embeddings/{model}/shard-{shard}.report.json",
    log:
        "logs/embed/{model}/shard-{shard}.log",
    benchmark:
        "logs/benchmarks/embed/{model}/shard-{shard}.tsv"
    conda:
        "../envs/embed.yaml"
    params:
        entry=model_entry,
        storage=config["extract"]["storage"],
    script:
        "../scripts/embed_shard.py"


rule merge_embeddings:
    input:
        shards=model_shards,
    output:
        embeddings="results/embeddings/{model}.parquet",
    log:
        "logs/merge_embeddings/{model}.log",
    benchmark:
        "logs/benchmarks/merge_embeddings/{model}.tsv"
    conda:
        "../envs/ingest.yaml"
    script:
        "../scripts/merge_embeddings.py"
