# Input functions and the plan every rule shares. The plan is made here, while Snakemake reads the
# workflow: every dataset is read and validated (a mistake stops the run before any job) and the
# shared sample is drawn, so `snakemake -n` lists every (model, shard) job the data needs.
import sys
from pathlib import Path

# The workflow plans with the package from this checkout, as scripts/_bootstrap.py does for jobs.
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
import _bootstrap  # noqa: E402, F401

from snakemake.exceptions import WorkflowError  # noqa: E402
from snakemake.logging import logger  # noqa: E402

from cxratlas.embed.models import needs_fit, reads_images, sample_columns  # noqa: E402
from cxratlas.ingest.datasets import dataset_specs  # noqa: E402
from cxratlas.ingest.manifest import snake_case  # noqa: E402
from cxratlas.ingest.plan import Plan, make_plan  # noqa: E402
from cxratlas.ingest.presets import kept_columns, preset_inputs  # noqa: E402
from cxratlas.reduce.backend import job_backend  # noqa: E402

MODELS = list(config["models"])
DEMO_DIR = "resources/demo"
DATASETS = dataset_specs(config, DEMO_DIR)
# the reduce jobs' conda env and GPU request, from the backend table
REDUCE_BACKEND = job_backend(config["reduce"]["backend"])


def _plan():
    """Made by the process the user started; a cluster job reads the one it was planned with."""
    if not workflow.is_main_process:
        return Plan.load()
    try:
        extra = sample_columns(config["models"])  # what the models' shards read
        return make_plan(config, DEMO_DIR, say=logger.warning, extra=extra)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise WorkflowError(
            f"{message}\n(stopped before any job: nothing under results/ was changed)"
        ) from None


PLAN = _plan()
SHARDS = list(range(PLAN.n_shards))


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
    """The shard's decode cache, when extract.decode_cache is set and the job reads images."""
    model = getattr(wildcards, "model", None)
    if not config["extract"]["decode_cache"] or (
        model and not reads_images(model, config["models"][model])
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


def analysis_disagreement():
    """Where models disagree, when the run has two models or more."""
    if len(MODELS) > 1:
        return ["results/analysis/disagreement/curve.parquet"]
    return []


def analysis_label_noise():
    """The label-noise outputs, unless the step is switched off (finding: null)."""
    if config["analysis"]["label_noise"]["finding"]:
        return ["results/analysis/label_noise/label_noise.parquet"]
    return []
