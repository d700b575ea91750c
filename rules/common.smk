# Input functions and the plan every rule shares. The plan is made here, while Snakemake reads the
# workflow: every dataset is read and validated (a mistake stops the run before any job), the
# shared sample is drawn and its shards assigned, so `snakemake -n` lists every (model, shard)
# job the data needs. Nothing is written under results/ until `onstart` commits the plan.
import re
import sys
from dataclasses import asdict
from pathlib import Path

# The workflow plans with the package from this checkout, as scripts/_bootstrap.py does for jobs.
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
import _bootstrap  # noqa: E402, F401

from snakemake.common.configfile import load_configfile  # noqa: E402
from snakemake.exceptions import WorkflowError  # noqa: E402
from snakemake.logging import logger  # noqa: E402

from cxratlas.config import (  # noqa: E402
    ConfigError,
    UserConfig,
    sort_model_entries,
    validate_config,
)
from cxratlas.embed.models import (  # noqa: E402
    intensity_of,
    needs_fit,
    reads_images,
    sample_columns,
)
from cxratlas.ingest.intensity import DISPLAY  # noqa: E402
from cxratlas.embed.models.weights import pin_warnings  # noqa: E402
from cxratlas.embed.reuse import planned_embeddings  # noqa: E402
from cxratlas.ingest.columns import left_out_note, settled  # noqa: E402
from cxratlas.ingest.datasets import dataset_specs  # noqa: E402
from cxratlas.ingest.manifest import snake_case  # noqa: E402
from cxratlas.ingest.plan import (  # noqa: E402
    Plan,
    PlanError,
    commit_plan,
    committed_plan,
    lock_holder,
    make_plan,
    manifest_names,
    proposed_ledger,
)
from cxratlas.ingest.presets import kept_columns, preset_inputs  # noqa: E402
from cxratlas.analysis.leads import top_leads_text  # noqa: E402
from cxratlas.analysis.probes import LabelPolicy  # noqa: E402
from cxratlas.analysis.subgroup_plan import check_planned_subgroups  # noqa: E402
from cxratlas.io import atlas_view_files  # noqa: E402
from cxratlas.reduce.backend import job_backend  # noqa: E402
from cxratlas.slices.classifiers import PROBE_SCORES, ClassifierError  # noqa: E402
from cxratlas.slices.plan import plan_classifiers  # noqa: E402
from cxratlas.slices.run import AcrossSettings, SliceSettings  # noqa: E402


def _stopped(exc):
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return WorkflowError(
        f"{message}\n(stopped before any job: nothing under results/ was changed)"
    )


# What the user wrote (--configfile, --config) apart from the defaults it merges over: an error
# names the file that set its key, and a default naming a column the manifest lacks gives way
# where the same column written by the user stops the run.
USER = UserConfig.of(
    [(str(f), load_configfile(f)) for f in workflow.config_settings.configfiles],
    workflow.config_settings.config,
    defaults=Path(workflow.basedir) / "config/config.yaml",
)
try:
    validate_config(config, USER)  # and the schema's defaults filled in
except ConfigError as exc:
    raise _stopped(exc) from None
sort_model_entries(config)  # key order is not a change: no shard reruns for it
MODELS = list(config["models"])
DEMO_DIR = "resources/demo"
SAMPLE = (
    "results/sample/sample.parquet"  # written by commit_plan: jobs read it, rules don't
)
DATASETS = dataset_specs(config, DEMO_DIR)
# the reduce jobs' conda env and GPU request, from the backend table
REDUCE_BACKEND = job_backend(config["reduce"]["backend"])


def _plan():
    """Made by the process the user started; a cluster job reads the one it was planned with."""
    if not workflow.is_main_process:
        return Plan.load()
    holder = lock_holder()
    if holder:
        logger.warning(
            f"another snakemake is running in this directory ({holder}): this one can plan "
            "(-n) but not run; a run is refused before it changes anything"
        )
    try:
        extra = sample_columns(config["models"])  # what the models' shards read
        return make_plan(config, DEMO_DIR, say=logger.warning, extra=extra, user=USER)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise _stopped(exc) from None


PLAN = _plan()
SHARDS = list(PLAN.shards)
MANIFEST_NAMES = manifest_names(PLAN, DATASETS)


def _check_subgroups():
    """Every `subgroups` entry names images of this sample (the key named if not)."""
    if not workflow.is_main_process:
        return
    try:
        check_planned_subgroups(config, PLAN, DATASETS, say=logger.info)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise _stopped(exc) from None


_check_subgroups()


def _classifiers():
    """The classifiers whose error slices the run finds, each checked before any job."""
    try:
        return plan_classifiers(config, PLAN, DATASETS, check=workflow.is_main_process)
    except ClassifierError as exc:
        raise _stopped(exc) from None


CLASSIFIERS = _classifiers()  # name -> slices.classifiers.ClassifierSpec
if workflow.is_main_process:
    logger.info(
        f"error slices of {len(CLASSIFIERS)} classifier(s): {', '.join(CLASSIFIERS)}"
    )


def commit():
    """onstart: the ledger and the plan, written where jobs read them (a real run only)."""
    try:
        commit_plan(PLAN, say=logger.warning)
    except PlanError as exc:
        raise _stopped(exc) from None


def say_findings():
    """onsuccess: what the run found, first: the top leads, and where the summary is."""
    summary = Path("results/summary/summary.md")
    if not summary.exists():
        return
    logger.info(f"\nWhat this study found ({summary}; the report opens on it):")
    logger.info(top_leads_text("results/summary/leads.parquet"))


def say_embedding_work():
    """Per model, the shard jobs this run will start and the images they will embed (the rest
    of their images reuse earlier vectors): what a dry run is for."""
    committed = committed_plan()
    ledger = proposed_ledger(PLAN)
    for model, entry in config["models"].items():
        run = [
            s
            for s in SHARDS
            if not Path(f"results/embeddings/{model}/shard-{s}.parquet").exists()
            or committed is None
            or s not in committed.shards
            or committed.shard_key(s) != PLAN.shard_key(s)
        ]
        rows = ledger.loc[ledger["shard"].isin(run)]
        state = f"results/models/{model}/state.npz" if needs_fit(model, entry) else None
        todo = len(rows)
        if todo and reads_images(model, entry):
            merged = f"results/embeddings/{model}.parquet"
            todo = planned_embeddings(
                rows, merged, entry, state, config["extract"]["storage"]
            )
        logger.info(
            f"model {model}: {len(run)} of {len(SHARDS)} shard job(s) to run, {todo} image(s) "
            f"to embed, {len(rows) - todo} vector(s) reused"
        )


if workflow.is_main_process:
    say_embedding_work()
    if note := left_out_note(config, MANIFEST_NAMES):
        logger.info(note)
    # entries whose weights may change under the study: said before any job
    for line in pin_warnings(config["models"]):
        logger.warning(line)


def shard_key(wildcards):
    """The shard jobs' param; it changes only when an image is added to the shard or moves."""
    return PLAN.shard_key(int(wildcards.shard))


def dataset_files():
    """Every file the datasets are read from."""
    return [f for spec in DATASETS for f in preset_inputs(spec)]


def model_entry(wildcards):
    return config["models"][wildcards.model]


def group_keeps_going(wildcards):
    """No input: makes a group job's Snakemake keep going past a failed shard.

    profiles/slurm packs several shards into one Slurm job (a job group); on the node one
    Snakemake runs them one after another, started without --keep-going, so a failed shard would
    stop the shards after it and the next run would plan them again with it. Its settings exist
    only once the DAG is built, which is when input functions run, before any job starts.
    """
    if workflow.remote_exec and workflow.execution_settings is not None:
        workflow.execution_settings.keep_going = True
    return {}


def model_state(wildcards):
    """The fitted state a model's shards need, if its kind has a fit step."""
    if needs_fit(wildcards.model, config["models"][wildcards.model]):
        return {"state": f"results/models/{wildcards.model}/state.npz"}
    return {}


def _intensity(model):
    """How the job's images become 8 bits: the model's `intensity:`, else (thumbnails) the
    display conversion."""
    return intensity_of(model, config["models"][model]) if model else DISPLAY


# one decode cache per 8-bit conversion in use; a model converting its own way adds a cache
# (and its decode jobs) without touching the others'
INTENSITIES = {
    _intensity(m).key: _intensity(m)
    for m in [None, *MODELS]
    if m is None or reads_images(m, config["models"][m])
}
INTENSITY_KEY = "[a-z_]+-[0-9a-f]{8}"


def decode_intensity(wildcards):
    """The decode job's param: its conversion's settings (not where they come from)."""
    settings = INTENSITIES[wildcards.intensity].as_dict()
    return {k: v for k, v in settings.items() if k != "source"}


def decoded_shard(wildcards):
    """The shard's decode cache, when extract.decode_cache is set and the job reads images."""
    model = getattr(wildcards, "model", None)
    if not config["extract"]["decode_cache"] or (
        model and not reads_images(model, config["models"][model])
    ):
        return {}
    key = _intensity(model).key
    return {"decoded": f"results/decoded/{key}/shard-{wildcards.shard}.parquet"}


def merged_embeddings(wildcards):
    """The model's merged file from the last run, where shards find vectors to reuse (a param,
    not an input: it is the merge's output)."""
    return f"results/embeddings/{wildcards.model}.parquet"


def model_shards(wildcards):
    return expand(
        "results/embeddings/{model}/shard-{shard}.parquet",
        model=wildcards.model,
        shard=SHARDS,
    )


def atlas_views():
    """Each model's one-model view (`cxr-atlas view --model`): its state and map labels."""
    return [str(p) for m in MODELS for p in atlas_view_files("results/atlas", m)]


def atlas_columns():
    """Manifest columns the atlas carries: privacy's allow-list, each dataset's kept columns, and
    `dataset` when there is more than one."""
    kept = [snake_case(c) for spec in DATASETS for c in kept_columns(spec)]
    allowed = settled(config, "privacy.atlas_columns", MANIFEST_NAMES)
    columns = [*allowed, *kept]
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


def summary_optional(wildcards):
    """The summary's inputs that exist only in some runs: disagreement (two models or more),
    label noise (unless switched off) and the subgroups (where the config names any)."""
    out = {}
    if len(MODELS) > 1:
        out["disagreement"] = "results/analysis/disagreement/images.parquet"
    out |= {"label_noise": p for p in analysis_label_noise()}
    if SUBGROUPS:  # the user's own selections get a section of the landing page
        for name in ("placement", "performance"):
            out[f"subgroup_{name}s"] = expand(
                f"{SUBGROUP_DIR}/{{name}}/{name}.parquet", name=SUBGROUPS
            )
    return out


def analysis_label_noise():
    """The label-noise outputs, unless the step is switched off (finding: null)."""
    if config["analysis"]["label_noise"]["finding"]:
        return ["results/analysis/label_noise/label_noise.parquet"]
    return []


# subgroups (rules/subgroups.smk)
SUBGROUPS = list(config["subgroups"])
SUBGROUP_DIR = "results/analysis/subgroups"


def subgroup_selection(wildcards):
    """The subgroup's selection file, an input: exporting it again reruns its job."""
    entry = config["subgroups"][wildcards.name]
    path = entry if isinstance(entry, str) else entry.get("file")
    return {"selection": path} if path else {}


def subgroup_settings():
    """The settings a subgroup job reads (params: another analysis setting reruns none)."""
    a = config["analysis"]
    return {
        "subgroups": a["subgroups"],
        "shortcuts": {"min_group": a["shortcuts"]["min_group"]},
        "probes": {"bootstrap": a["probes"]["bootstrap"]},
        "seed": a["seed"],
    }


def classifier_scores():
    """Every classifier's normalised score file (`classifiers`, where the run names any)."""
    return expand(
        "results/classifiers/{c}.parquet", c=list(config.get("classifiers") or {})
    )


def analysis_subgroups():
    """The subgroups' overview (which needs every subgroup's job), when any is named."""
    return [f"{SUBGROUP_DIR}/overview.tsv"] if SUBGROUPS else []


# The error slices' inputs and params (rules/slices.smk): one classifier per wildcard.
def classifier_inputs(wildcards):
    """A user classifier's predictions file, or the probes' scores for probe_<model>."""
    spec = CLASSIFIERS[wildcards.classifier]
    return {"scores": PROBE_SCORES} if spec.probe else {"predictions": spec.predictions}


def label_policy():
    """How -1 and blank labels read (analysis.probes.uncertain, .missing): a classifier's
    labels are the probes' labels."""
    return asdict(LabelPolicy.from_probes(config["analysis"]["probes"]))


def classifier_spec(wildcards):
    return asdict(CLASSIFIERS[wildcards.classifier])


def classifier_thresholds(wildcards):
    """Per finding the classifier scores (a probe: every finding probed), its threshold
    (None: the Youden point)."""
    spec = CLASSIFIERS[wildcards.classifier]
    findings = (
        spec.findings or config["analysis"]["probes"]["findings"] or PLAN.findings
    )
    return {f: spec.threshold_of(f) for f in findings}


def slice_settings(keys):
    """What of analysis.slices a step reads: a change elsewhere reruns none of its jobs."""
    return {k: config["analysis"]["slices"][k] for k in keys}


def slice_jobs(name):
    return expand(
        "results/analysis/slices/{classifier}/{name}", classifier=CLASSIFIERS, name=name
    )
