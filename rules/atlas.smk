rule thumbnails:
    input:
        unpack(decoded_shard),
    output:
        thumbnails="results/thumbnails/shard-{shard}.parquet",
    log:
        "logs/thumbnails/shard-{shard}.log",
    conda:
        "../envs/ingest.yaml"
    params:
        sample=SAMPLE,
        shard_key=shard_key,
        size=config["atlas"]["thumbnail_size"],
        format=config["atlas"]["thumbnail_format"],
    script:
        "../scripts/thumbnails.py"


rule atlas:
    input:
        manifest="results/manifest.parquet",
        reduced=expand("results/reduce/{model}/reduced.parquet", model=MODELS),
        thumbnails=expand("results/thumbnails/shard-{shard}.parquet", shard=SHARDS),
        names=expand("results/analysis/clusters/{model}/groups.parquet", model=MODELS),
        slices="results/analysis/slices/slices.parquet",
        slice_members="results/analysis/slices/members.parquet",
        classifiers=expand(
            "results/classifiers/{classifier}.parquet", classifier=CLASSIFIERS
        ),
    output:
        atlas="results/atlas/atlas.parquet",
        state="results/atlas/state.json",
        summary="results/atlas/summary.json",
        views=atlas_views(),
    log:
        "logs/atlas.log",
    benchmark:
        "logs/benchmarks/atlas.tsv"
    conda:
        "../envs/atlas.yaml"
    params:
        sample=SAMPLE,
        members=PLAN.members_sha,
        metadata_columns=atlas_columns(),
        ids_hashed=config["privacy"]["hash_ids"],
    script:
        "../scripts/atlas.py"
