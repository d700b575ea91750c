# Subgroups brought back in (`subgroups`: a selection exported from Embedding Atlas, an id list,
# or a query over the manifest's columns), checked by the plan (rules/common.smk). One job per
# subgroup whose params are its own entry and the few settings it reads, so adding a subgroup
# plans its job and the overview table: no embedding, reduce or other subgroup's job.
rule subgroup:
    input:
        unpack(subgroup_selection),
        atlas="results/atlas/atlas.parquet",
        manifest="results/manifest.parquet",
        probe_scores="results/analysis/probes/scores.parquet",
        classifiers=classifier_scores(),
    output:
        members=f"{SUBGROUP_DIR}/{{name}}/members.parquet",
        table1=f"{SUBGROUP_DIR}/{{name}}/table1.parquet",
        placement=f"{SUBGROUP_DIR}/{{name}}/placement.parquet",
        clusters=f"{SUBGROUP_DIR}/{{name}}/clusters.parquet",
        performance=f"{SUBGROUP_DIR}/{{name}}/performance.parquet",
        enrichment=f"{SUBGROUP_DIR}/{{name}}/enrichment.parquet",
        table1_tsv=report(
            f"{SUBGROUP_DIR}/{{name}}/table1.tsv",
            caption="../report/subgroup_table1.rst",
            category="Subgroups",
            subcategory="{name}",
        ),
        table1_figure=report(
            f"{SUBGROUP_DIR}/{{name}}/table1.png",
            caption="../report/subgroup_table1.rst",
            category="Subgroups",
            subcategory="{name}",
        ),
        placement_tsv=report(
            f"{SUBGROUP_DIR}/{{name}}/placement.tsv",
            caption="../report/subgroup_placement.rst",
            category="Subgroups",
            subcategory="{name}",
        ),
        clusters_tsv=report(
            f"{SUBGROUP_DIR}/{{name}}/clusters.tsv",
            caption="../report/subgroup_placement.rst",
            category="Subgroups",
            subcategory="{name}",
        ),
        maps=report(
            f"{SUBGROUP_DIR}/{{name}}/maps.png",
            caption="../report/subgroup_placement.rst",
            category="Subgroups",
            subcategory="{name}",
        ),
        performance_tsv=report(
            f"{SUBGROUP_DIR}/{{name}}/performance.tsv",
            caption="../report/subgroup_performance.rst",
            category="Subgroups",
            subcategory="{name}",
        ),
        performance_figure=report(
            f"{SUBGROUP_DIR}/{{name}}/performance.png",
            caption="../report/subgroup_performance.rst",
            category="Subgroups",
            subcategory="{name}",
        ),
        sheet=report(
            f"{SUBGROUP_DIR}/{{name}}/contact_sheet.png",
            caption="../report/subgroup_sheet.rst",
            category="Subgroups",
            subcategory="{name}",
        ),
    log:
        "logs/analysis/subgroups/{name}.log",
    benchmark:
        "logs/benchmarks/analysis/subgroups/{name}.tsv"
    wildcard_constraints:
        name="|".join(re.escape(n) for n in SUBGROUPS) or "$^",
    conda:
        "../envs/cpu.yaml"
    params:
        subgroup=lambda wildcards: config["subgroups"][wildcards.name],
        analysis=subgroup_settings(),
    script:
        "../scripts/subgroup.py"


rule subgroups_overview:
    input:
        placement=expand(f"{SUBGROUP_DIR}/{{name}}/placement.parquet", name=SUBGROUPS),
        members=expand(f"{SUBGROUP_DIR}/{{name}}/members.parquet", name=SUBGROUPS),
    output:
        table=report(
            f"{SUBGROUP_DIR}/overview.tsv",
            caption="../report/subgroups.rst",
            category="Subgroups",
        ),
    log:
        "logs/analysis/subgroups/overview.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/subgroups_overview.py"
