"""One source for each default: config/config.yaml, or the schema for what that file leaves out."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SCHEMA = yaml.safe_load((REPO / "src/cxratlas/schemas/config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


def _node(node: dict) -> dict:
    if "$ref" in node:
        return SCHEMA["$defs"][node["$ref"].split("/")[-1]]
    return node


def _both(config: dict, schema: dict, where: str) -> list[str]:
    found = []
    props = _node(schema).get("properties", {})
    for key, value in config.items():
        if key not in props or (where == "" and key == "models"):
            continue
        sub = _node(props[key])
        if "default" in sub:
            found.append(f"{where}{key}")
        if isinstance(value, dict):
            found += _both(value, sub, f"{where}{key}.")
    return found


def test_no_default_is_written_twice():
    assert _both(CONFIG, SCHEMA, "") == []


def test_the_default_config_is_complete_and_valid():
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate(cfg, str(REPO / "src/cxratlas/schemas/config.schema.yaml"))
    for section in SCHEMA["required"]:
        assert section in cfg, section
    for section in ("sample", "extract", "reduce", "analysis", "privacy", "atlas"):
        missing = set(SCHEMA["properties"][section]["properties"]) - set(cfg[section])
        assert not missing, f"{section}: {missing} have no default (add them to config.yaml)"


def test_the_schema_knows_exactly_the_registered_model_kinds():
    """One registry holds the kinds; the schema's enum and its per-kind sections follow it."""
    from cxratlas.embed.models import KINDS

    model = SCHEMA["$defs"]["model"]
    assert set(model["properties"]["kind"]["enum"]) == set(KINDS)
    per_kind = {c["if"]["properties"]["kind"]["const"] for c in model["allOf"]}
    assert per_kind == set(KINDS)


def test_the_kind_contract_answers_without_naming_a_kind():
    from cxratlas.embed.models import needs_fit, reads_images

    assert needs_fit("p", {"kind": "pixels", "pca": 8})
    assert not needs_fit("p", {"kind": "pixels"}) and not needs_fit("r", {"kind": "timm"})
    assert not reads_images("c", {"kind": "precomputed", "source": "x.parquet"})
    assert all(reads_images("m", {"kind": k}) for k in ("pixels", "hf_automodel", "open_clip"))


def test_the_schema_knows_exactly_the_registered_reduce_backends():
    from cxratlas.reduce.backend import BACKENDS, CHOICES, job_backend

    assert set(SCHEMA["properties"]["reduce"]["properties"]["backend"]["enum"]) == set(CHOICES)
    assert job_backend("auto") == BACKENDS["cpu"] and job_backend("gpu").gpu
    for info in BACKENDS.values():
        assert (REPO / info.env).is_file()


def test_the_schema_knows_exactly_the_registered_presets():
    from cxratlas.ingest.presets import PRESETS

    dataset = SCHEMA["$defs"]["dataset"]["properties"]
    assert set(dataset["preset"]["enum"]) == set(PRESETS)
    assert all(p.summary for p in PRESETS.values())


def test_settings_objects_default_to_the_default_config():
    """The settings classes carry defaults for callers outside the workflow (tests, benchmarks);
    they must equal config.yaml's, the one source the workflow reads."""
    from cxratlas.embed.extract import ExtractSettings
    from cxratlas.reduce import ReduceSettings

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert ReduceSettings.from_config(cfg["reduce"]) == ReduceSettings()
    assert ExtractSettings.from_config(cfg["extract"]) == ExtractSettings()


def test_a_model_entry_in_another_key_order_is_the_same_params():
    """Snakemake records a param's repr: a reordered entry must not rerun a model's shards."""
    from cxratlas.config import sort_model_entries

    a = {"models": {"b_model": {"kind": "pixels", "image_size": 16, "hub": {"x": 1, "a": 2}},
                    "a_model": {"kind": "pixels", "image_size": 8}}}  # fmt: skip
    b = {"models": {"b_model": {"hub": {"a": 2, "x": 1}, "image_size": 16, "kind": "pixels"},
                    "a_model": {"image_size": 8, "kind": "pixels"}}}  # fmt: skip
    sort_model_entries(a)
    sort_model_entries(b)
    assert repr(a) == repr(b)
    assert list(a["models"]) == ["b_model", "a_model"]  # the models keep the user's order
