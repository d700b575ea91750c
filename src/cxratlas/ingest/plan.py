"""The plan, made while Snakemake reads the workflow, before any job: every dataset read and
validated, the shared sample drawn, the shard count fixed.

Why before any job: a mistake in a manifest or the dataset section must stop the run while every
file under results/ is still as it was (an ingest *job* that fails has already had its good output
deleted), and what embedding depends on (image id, path, shard) must live in a file that changes
only when those change. `results/sample/sample.parquet` is rewritten only when its content
differs, so fixing a label value or a column map, adding keep_columns, a label column or a table
reruns ingest, the atlas and the analyses, and no embedding job.

The plan is cached in `results/sample/plan.json` under a key of the config sections it reads, the
stat of every dataset file and this package's ingest code; inside a cluster job it is only read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

SAMPLE_PATH = "results/sample/sample.parquet"
PLAN_PATH = "results/sample/plan.json"
# the modules whose behaviour decides the plan: a change to any of them remakes it


class PlanError(ValueError):
    """A dataset, sample or analysis setting that cannot work, found before any job."""


@dataclass(frozen=True)
class Plan:
    """What every rule needs to know before it runs."""

    key: str
    n_images: int
    n_shards: int
    findings: tuple[str, ...]
    attributes: tuple[str, ...]
    sample_sha: str
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def load(cls, path: str | os.PathLike = PLAN_PATH) -> Plan:
        raw = json.loads(Path(path).read_text())
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})

    def save(self, path: str | os.PathLike = PLAN_PATH) -> None:
        from cxratlas.io import write_json

        write_json(asdict(self), path)


def ensure_demo(spec: dict[str, Any]) -> bool:
    """Generate the phantom demo where the plan reads it, once per set of demo settings; True
    when the images were (re)drawn, so their embeddings are redone though ids and paths stay."""
    from cxratlas.demo.phantom import generate_demo

    root = Path(spec["image_root"])
    settings = {k: spec["demo"][k] for k in ("n_images", "seed", "image_size", "outlier_fraction")}
    stamp = root / "demo.json"
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return False
    log.warning("generating %d phantom radiographs under %s", settings["n_images"], root)
    generate_demo(root, **settings)
    stamp.write_text(json.dumps(settings, sort_keys=True))
    return True


def _plan_key(config: dict[str, Any], specs: list[dict[str, Any]], extra: tuple[str, ...]) -> str:
    """A hash of everything the plan reads: settings, each dataset file's stat, the code."""
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
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def frame_sha(frame: pd.DataFrame) -> str:
    """A content hash of a table: its column names, types and every value in order."""
    h = hashlib.sha256(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


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


def _draw(
    config: dict[str, Any], manifest: pd.DataFrame, extra: tuple[str, ...]
) -> tuple[pd.DataFrame, list[str]]:
    from cxratlas.ingest.sample import draw_sample, n_shards

    s, shard_size = config["sample"], config["extract"]["shard_size"]
    notes = []
    absent = [c for c in s["stratify_by"] or [] if c not in manifest.columns]
    if absent:
        raise PlanError(
            f"sample.stratify_by: column(s) {absent} are not in the manifest (columns: "
            f"{list(manifest.columns)}); values filled from DICOM headers arrive only at ingest"
        )
    if s["n"] is not None and s["n"] > len(manifest):
        notes.append(
            f"sample.n is {s['n']} but the datasets hold {len(manifest)} usable images: the "
            f"sample takes all {len(manifest)}, in {n_shards(len(manifest), shard_size)} "
            "shard(s) per model"
        )
    sample = draw_sample(manifest, s["n"], s["seed"], s["stratify_by"], shard_size, extra)
    return sample, notes


def make_plan(
    config: dict[str, Any],
    demo_dir: str = "resources/demo",
    say: Callable[[str], None] = log.warning,
    extra: tuple[str, ...] = (),
) -> Plan:
    """Validate the datasets and (re)write the shared sample if its content changed. `extra`:
    manifest columns the models' shards read beyond id and path (the embed registry says)."""
    from cxratlas.ingest.datasets import dataset_specs, ingest_datasets
    from cxratlas.ingest.sample import n_shards
    from cxratlas.io import ManifestColumns, write_frame

    specs = dataset_specs(config, demo_dir)
    redrawn = any(ensure_demo(spec) for spec in specs if spec["preset"] == "demo")
    key = _plan_key(config, specs, extra)
    if not redrawn and Path(PLAN_PATH).exists() and Path(SAMPLE_PATH).exists():
        try:
            cached = Plan.load()
        except (TypeError, ValueError):  # written by another version: make it anew
            cached = None
        if cached and cached.key == key:
            check_analysis_settings(config, cached.findings)
            for note in cached.notes:
                say(note)
            return cached
    # DICOM headers are read by the ingest job, not here: the plan must stay quick
    quick = [{**copy.deepcopy(spec), "dicom_tags": False} for spec in specs]
    manifest, _ = ingest_datasets(quick, config["privacy"])
    columns = ManifestColumns.of(manifest)
    check_analysis_settings(config, columns.findings)
    sample, notes = _draw(config, manifest, extra)
    sha = frame_sha(sample)
    if redrawn or not _same_table(sample, SAMPLE_PATH):  # else keep the file and its stamp
        write_frame(sample, SAMPLE_PATH)
        say(f"shared sample of {len(sample)} images written to {SAMPLE_PATH}")
    plan = Plan(
        key=key,
        n_images=len(sample),
        n_shards=n_shards(len(sample), config["extract"]["shard_size"]),
        findings=columns.findings,
        attributes=columns.attributes,
        sample_sha=sha,
        notes=tuple(notes),
    )
    plan.save()
    for note in notes:
        say(note)
    return plan
