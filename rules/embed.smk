rule decode_shard:
    output:
        decoded=(
            temp("results/decoded/{intensity}/shard-{shard}.parquet")
            if config["extract"]["decode_cache_temp"]
            else "results/decoded/{intensity}/shard-{shard}.parquet"
        ),
    log:
        "logs/decode/{intensity}/shard-{shard}.log",
    benchmark:
        "logs/benchmarks/decode/{intensity}/shard-{shard}.tsv"
    wildcard_constraints:
        intensity=INTENSITY_KEY,
    conda:
        "../envs/ingest.yaml"
    params:
        sample=SAMPLE,
        shard_key=shard_key,
        max_side=config["extract"]["decode_cache"],
        intensity=decode_intensity,
    script:
        "../scripts/decode_shard.py"


rule fit_model:
    output:
        state="results/models/{model}/state.npz",
    log:
        "logs/fit_model/{model}.log",
    benchmark:
        "logs/benchmarks/fit_model/{model}.tsv"
    conda:
        "../envs/embed.yaml"
    params:
        sample=SAMPLE,
        epoch=PLAN.epoch,
        entry=model_entry,
        seed=config["sample"]["seed"],
    script:
        "../scripts/fit_model.py"


rule embed_shard:
    input:
        unpack(group_keeps_going),
        unpack(model_state),
        unpack(decoded_shard),
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
        sample=SAMPLE,
        shard_key=shard_key,
        earlier=merged_embeddings,
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
    params:
        members=PLAN.members_sha,
    script:
        "../scripts/merge_embeddings.py"
