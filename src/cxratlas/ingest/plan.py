"""The plan, made while Snakemake reads the workflow, before any job: every dataset read and
validated, the shared sample drawn, its shards assigned.

Why before any job: a mistake in a manifest or the dataset section must stop the run while every
file under results/ is still as it was, and what embedding depends on (image id, path, shard)
must be known when Snakemake decides which jobs to run.

Why nothing is written then: `snakemake -n`, `--lint` or `--report` read the workflow too, and
must leave results/ as it was. `make_plan` only reads and computes (it caches its work under
`.snakemake/cxratlas/`); `commit_plan` writes the ledger (`results/sample/sample.parquet`) and the
plan (`results/sample/plan.json`, which cluster jobs read) from the workflow's `onstart`, which
Snakemake runs only for a real run, after it has locked the working directory. Jobs decide
whether to run from `Plan.shard_key` and `Plan.members_sha` (rule params), so the dry run and the
real run plan the same jobs.

`commit_plan` also prunes: images that left the sample (withdrawn consent, a bad series) are
taken out of the per-shard files already written and out of the logs (`ingest.prune`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from cxratlas.config import UserConfig
    from cxratlas.ingest.columns import ManifestNames

log = logging.getLogger(__name__)

SAMPLE_PATH = "results/sample/sample.parquet"
PLAN_PATH = "results/sample/plan.json"
CACHE_DIR = ".snakemake/cxratlas"  # the plan's own cache: not a result, safe to write in -n
CACHE_KEPT = 8  # plans kept in the cache (one per key: two snakemakes never share a file)
_HELD: dict[str, object] = {}  # directory -> its run lock's open file, held until exit


class PlanError(ValueError):
    """A dataset, sample or analysis setting that cannot work, found before any job."""


@dataclass(frozen=True)
class Plan:
    """What every rule needs to know before it runs. `shard_revs[i]` is the revision of
    `shards[i]`; `epoch` names the ledger (a new one starts when there was none, or the demo's
    images were drawn again); `columns`: the manifest's columns as the plan read them (the
    settings that name columns are checked against them)."""

    key: str
    n_images: int
    shards: tuple[int, ...]
    shard_revs: tuple[int, ...]
    epoch: str
    findings: tuple[str, ...]
    attributes: tuple[str, ...]
    sample_sha: str
    members_sha: str
    inputs_stamp: str = ""
    columns: tuple[str, ...] = ()
    changes: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = field(default=())

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    def shard_key(self, shard: int) -> str:
        """What a shard's jobs were last run for: it changes only when an image is added to
        the shard or changes path (a rule param, so Snakemake reruns exactly those)."""
        return f"{self.epoch}.{self.shard_revs[self.shards.index(int(shard))]}"

    @classmethod
    def load(cls, path: str | os.PathLike = PLAN_PATH) -> Plan:
        raw = json.loads(Path(path).read_text())
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})

    def save(self, path: str | os.PathLike = PLAN_PATH) -> None:
        from cxratlas.io import write_json

        write_json(asdict(self), path)


def committed_plan() -> Plan | None:
    """The plan the last real run committed, if it is readable."""
    try:
        return Plan.load(PLAN_PATH) if Path(SAMPLE_PATH).exists() else None
    except (OSError, TypeError, ValueError):  # written by another version
        return None


def ensure_demo(spec: dict[str, Any]) -> str:
    """Generate the phantom demo where the plan reads it, once per set of demo settings; returns
    those settings' stamp (new pixels under the same ids and paths start a new ledger)."""
    from cxratlas.demo.phantom import generate_demo

    root = Path(spec["image_root"])
    settings = {k: spec["demo"][k] for k in ("n_images", "seed", "image_size", "outlier_fraction")}
    stamp = root / "demo.json"
    text = json.dumps(settings, sort_keys=True)
    if not (stamp.exists() and json.loads(stamp.read_text()) == settings):
        log.warning("generating %d phantom radiographs under %s", settings["n_images"], root)
        generate_demo(root, **settings)
        stamp.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _plan_key(config, specs, extra, committed: Plan | None) -> str:
    """A hash of everything the plan reads: settings, each dataset file's stat, the code, and
    the ledger it extends."""
    from cxratlas.ingest.presets import preset_inputs

    files = []
    for spec in specs:
        for f in preset_inputs(spec):
            st = os.stat(f) if os.path.exists(f) else None
            files.append([f, st and st.st_size, st and st.st_mtime_ns])
    here = Path(__file__).parent
    # the whole ingest stage: a fix to any reader, check or the sampler re-plans
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(here.rglob("*.py")))).hexdigest()
    parts = {
        "datasets": specs,
        "privacy": config["privacy"],
        "sample": config["sample"],
        "shard_size": config["extract"]["shard_size"],
        "sample_columns": list(extra),
        "files": files,
        "code": code,
        "ledger": committed and [committed.sample_sha, committed.epoch, committed.inputs_stamp],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def frame_sha(frame: pd.DataFrame) -> str:
    """A content hash of a table: its column names, types and every value in order."""
    h = hashlib.sha256(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def members_sha(ledger: pd.DataFrame) -> str:
    """Which images sit in which shard under which path: what a model's merged file holds.
    Columns a new model's file layout adds do not change it."""
    return frame_sha(ledger[["image_id", "path", "shard"]])


def _same_table(frame: pd.DataFrame, path: str) -> bool:
    """Whether the Parquet file at `path` holds exactly `frame` (names, types, values)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not Path(path).exists():
        return False
    return pq.read_table(path).equals(pa.Table.from_pandas(frame, preserve_index=False))


def check_analysis_settings(config: dict[str, Any], findings: tuple[str, ...]) -> None:
    """Finding names in the analysis section must be findings of the manifest."""
    named = {
        "analysis.probes.findings": config["analysis"]["probes"].get("findings") or [],
        "analysis.label_noise.finding": [
            f for f in [config["analysis"]["label_noise"].get("finding")] if f not in (None, "auto")
        ],
    }
    for key, names in named.items():
        absent = [f for f in names if f not in findings]
        if absent:
            raise PlanError(
                f"{key}: {absent} not among the manifest's findings {list(findings)}; name "
                "label columns in dataset.label_columns (any name works)"
            )


def manifest_names(plan: Plan, specs: list[dict[str, Any]]) -> ManifestNames:
    """What the settings that name columns are checked against (`ingest.columns`)."""
    from cxratlas.ingest.columns import ManifestNames

    return ManifestNames.of(plan.columns, plan.attributes, specs)


def check_column_settings(
    config: dict[str, Any], names: ManifestNames, user: UserConfig | None
) -> None:
    """A column the user named that the manifest lacks stops the plan; a default's gives way."""
    from cxratlas.ingest import columns

    try:
        columns.check_column_settings(config, names, user)
    except columns.ColumnSettingError as exc:
        raise PlanError(str(exc)) from None


def _draw(
    config: dict[str, Any], manifest: pd.DataFrame, extra: tuple[str, ...], names: ManifestNames
):
    from cxratlas.ingest.columns import settled
    from cxratlas.ingest.sample import draw_sample, n_shards

    s, shard_size = config["sample"], config["extract"]["shard_size"]
    notes = []
    strata = settled(config, "sample.stratify_by", names)  # the user's are all there
    if s["n"] is not None and s["n"] > len(manifest):
        notes.append(
            f"sample.n is {s['n']} but the datasets hold {len(manifest)} usable images: the "
            f"sample takes all {len(manifest)}, in {n_shards(len(manifest), shard_size)} "
            "shard(s) per model"
        )
    unit = s.get("unit", "image")
    try:
        drawn = draw_sample(manifest, s["n"], s["seed"], strata, extra, unit)
    except KeyError as exc:
        raise PlanError(exc.args[0]) from None
    return drawn, notes


def _cache(key: str, suffix: str) -> Path:
    return Path(CACHE_DIR) / "plans" / f"{key[:24]}{suffix}"


def _cached(key: str) -> Plan | None:
    try:
        plan = Plan.load(_cache(key, ".json"))
    except (OSError, TypeError, ValueError):
        return None
    return plan if plan.key == key and _cache(key, ".parquet").exists() else None


def _cache_plan(plan: Plan, ledger: pd.DataFrame) -> None:
    """Keep the plan and its ledger under its key, and only the newest few plans."""
    from cxratlas.io import write_frame

    write_frame(ledger, _cache(plan.key, ".parquet"))
    plan.save(_cache(plan.key, ".json"))
    plans = sorted(_cache("", "").parent.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    for old in plans[:-CACHE_KEPT]:
        old.unlink(missing_ok=True)
        old.with_suffix(".parquet").unlink(missing_ok=True)


def make_plan(
    config: dict[str, Any],
    demo_dir: str = "resources/demo",
    say: Callable[[str], None] = log.warning,
    extra: tuple[str, ...] = (),
    user: UserConfig | None = None,
) -> Plan:
    """Validate the datasets, draw the sample and assign its shards against the committed
    ledger; writes nothing under results/. `extra`: manifest columns the models' shards read
    beyond id and path (the embed registry says). `user`: what the user wrote
    (`cxratlas.config.UserConfig`), so that a default naming an absent column gives way while
    the user's own is an error; without it every setting is taken as a default."""
    from cxratlas.ingest.columns import ManifestNames
    from cxratlas.ingest.datasets import dataset_specs, quick_manifest
    from cxratlas.ingest.sample import assign_shards
    from cxratlas.io import ManifestColumns

    specs = dataset_specs(config, demo_dir)
    stamp = "".join(ensure_demo(spec) for spec in specs if spec["preset"] == "demo")
    committed = committed_plan()
    key = _plan_key(config, specs, extra, committed)
    cached = _cached(key)
    if cached:
        check_analysis_settings(config, cached.findings)
        check_column_settings(config, manifest_names(cached, specs), user)
        for note in cached.notes:
            say(note)
        return cached
    extends = committed is not None and committed.inputs_stamp == stamp
    previous = pd.read_parquet(SAMPLE_PATH) if extends else None
    held = frozenset(previous["image_id"]) if previous is not None else frozenset()
    manifest, _ = quick_manifest(specs, config["privacy"], sampled=held)
    columns = ManifestColumns.of(manifest)
    check_analysis_settings(config, columns.findings)
    names = ManifestNames.of(manifest.columns, columns.attributes, specs)
    check_column_settings(config, names, user)
    drawn, notes = _draw(config, manifest, extra, names)
    ledger, changes = assign_shards(drawn, previous, config["extract"]["shard_size"])
    sha = frame_sha(ledger)
    revs = ledger.groupby("shard")["shard_rev"].max()
    plan = Plan(
        key=key,
        n_images=len(ledger),
        shards=tuple(int(s) for s in revs.index),
        shard_revs=tuple(int(r) for r in revs.to_numpy()),
        # a new ledger's name: its content and the demo pixels it was drawn over
        epoch=committed.epoch
        if extends
        else hashlib.sha256((sha + stamp).encode()).hexdigest()[:12],
        findings=columns.findings,
        attributes=columns.attributes,
        sample_sha=sha,
        members_sha=members_sha(ledger),
        inputs_stamp=stamp,
        columns=tuple(manifest.columns),
        changes=changes.counts(),
        notes=tuple(notes),
    )
    if committed is not None and (changes.added or changes.removed or changes.changed):
        say(f"the sample against the last run: {changes}")
    _cache_plan(plan, ledger)
    for note in notes:
        say(note)
    return plan


def proposed_ledger(plan: Plan) -> pd.DataFrame:
    """The ledger `make_plan` drew for `plan` (from its cache)."""
    try:
        ledger = pd.read_parquet(_cache(plan.key, ".parquet"))
    except OSError:
        ledger = None
    if ledger is None or frame_sha(ledger) != plan.sample_sha:
        raise PlanError(
            f"{_cache(plan.key, '.parquet')} does not hold the plan's sample (removed "
            "meanwhile?); start the run again"
        )
    return ledger


def _lock_file():
    Path(CACHE_DIR).mkdir(parents=True, exist_ok=True)
    return open(Path(CACHE_DIR) / "run.lock", "a+")  # noqa: SIM115 (held until exit)


def lock_holder() -> str | None:
    """Who holds this directory's run lock (another snakemake running here), or None."""
    if os.path.realpath(os.getcwd()) in _HELD or not (Path(CACHE_DIR) / "run.lock").exists():
        return None
    with _lock_file() as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def lock_run() -> None:
    """Hold this directory's run lock for the life of this process; refuse if another process
    holds it (a second run must not rewrite the ledger under the first one's jobs)."""
    here = os.path.realpath(os.getcwd())
    if here in _HELD:
        return
    handle = _lock_file()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise PlanError(
            f"another snakemake is running in {here} ({holder}; {CACHE_DIR}/run.lock is held): "
            "nothing was changed; wait for it, or plan with -n meanwhile"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    handle.flush()
    _HELD[here] = handle


def commit_plan(plan: Plan, say: Callable[[str], None] = log.warning) -> None:
    """Write the ledger and the plan where jobs read them, and prune what left the sample."""
    from cxratlas.ingest.prune import prune_results
    from cxratlas.io import write_frame

    lock_run()
    ledger = proposed_ledger(plan)
    previous = pd.read_parquet(SAMPLE_PATH) if Path(SAMPLE_PATH).exists() else None
    if not _same_table(ledger, SAMPLE_PATH):  # else keep the file and its stamp
        write_frame(ledger, SAMPLE_PATH)
        say(f"shared sample of {len(ledger)} images written to {SAMPLE_PATH}")
    if previous is not None:
        prune_results(previous, ledger, say)
    if committed_plan() != plan:
        plan.save(PLAN_PATH)
