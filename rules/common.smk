# Input functions and the plan every rule shares. The shard count is fixed here, from the
# config (or the manifest's row count), so `snakemake -n` lists every (model, shard) job.
import sys
from pathlib import Path

# The workflow plans with the package from this checkout, as scripts/_bootstrap.py does for jobs.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from cxratlas.datasets import dataset_specs  # noqa: E402
from cxratlas.manifest import snake_case  # noqa: E402
from cxratlas.models import needs_fit  # noqa: E402
from cxratlas.plan import planned_images  # noqa: E402
from cxratlas.presets import kept_columns, preset_inputs  # noqa: E402
from cxratlas.sample import n_shards  # noqa: E402

MODELS = list(config["models"])
DEMO_DIR = "resources/demo"
DATASETS = dataset_specs(config, DEMO_DIR)
N_SHARDS = n_shards(planned_images(config, DEMO_DIR), config["extract"]["shard_size"])
SHARDS = list(range(N_SHARDS))


def dataset_files():
    """Every file the datasets are read from."""
    return [f for spec in DATASETS for f in preset_inputs(spec)]


def model_entry(wildcards):
    return config["models"][wildcards.model]


def model_state(wildcards):
    """The fitted state a model's shards need, if its kind has a fit step."""
    if needs_fit(wildcards.model, config["models"][wildcards.model]):
        return {"state": f"results/models/{wildcards.model}/state.npz"}
    return {}


def decoded_shard(wildcards):
    """The shard's decode cache, when extract.decode_cache is set (precomputed models read no image)."""
    model = getattr(wildcards, "model", None)
    if not config["extract"]["decode_cache"] or (
        model and config["models"][model]["kind"] == "precomputed"
    ):
        return {}
    return {"decoded": f"results/decoded/shard-{wildcards.shard}.parquet"}


def model_shards(wildcards):
    return expand(
        "results/embeddings/{model}/shard-{shard}.parquet",
        model=wildcards.model,
        shard=SHARDS,
    )


def atlas_columns():
    """Manifest columns the atlas carries: privacy's allow-list, each dataset's kept columns, and
    `dataset` when there is more than one."""
    kept = [snake_case(c) for spec in DATASETS for c in kept_columns(spec)]
    columns = [*config["privacy"]["atlas_columns"], *kept]
    if len(DATASETS) > 1:
        columns.append("dataset")
    return list(dict.fromkeys(columns))


def analysis_datasets():
    """The cross-dataset tables, when the run reads more than one dataset."""
    if len(DATASETS) > 1:
        return ["results/analysis/datasets/mixing.parquet"]
    return []


def analysis_label_noise():
    """The label-noise outputs, when a finding is named for it."""
    if config["analysis"]["label_noise"]["finding"]:
        return ["results/analysis/label_noise/label_noise.parquet"]
    return []
