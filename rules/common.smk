# Input functions and the plan every rule shares. The shard count is fixed here, from the
# config (or the manifest's row count), so `snakemake -n` lists every (model, shard) job.
import sys
from pathlib import Path

# The workflow plans with the package from this checkout, as scripts/_bootstrap.py does for jobs.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from cxratlas.models import needs_fit  # noqa: E402
from cxratlas.plan import planned_images  # noqa: E402
from cxratlas.sample import n_shards  # noqa: E402

MODELS = list(config["models"])
N_SHARDS = n_shards(planned_images(config), config["extract"]["shard_size"])
SHARDS = list(range(N_SHARDS))
DEMO_DIR = "resources/demo"


def manifest_source():
    if config["dataset"]["preset"] == "demo":
        return f"{DEMO_DIR}/manifest.csv"
    return config["dataset"]["manifest"]


def image_root(wildcards, input):
    """Folder the manifest's relative image paths start from."""
    if config["dataset"]["preset"] == "demo":
        return str(Path(input.manifest).parent)
    return config["dataset"]["image_root"]


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


def analysis_label_noise():
    """The label-noise outputs, when a finding is named for it."""
    if config["analysis"]["label_noise"]["finding"]:
        return ["results/analysis/label_noise/label_noise.parquet"]
    return []
