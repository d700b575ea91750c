"""One source for each default: config/config.yaml, or the schema for what that file leaves out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
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
    from cxratlas.config import validate_config

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate_config(cfg)
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


# A mistake in the config is told in a few lines naming its key: never jsonschema's report, which
# prints the whole failing subschema and instance (153 lines for one misspelt key).
SCHEMA_DUMP = ("Failed validating", "On instance", "additionalProperties", "'type':", "$defs")


def _problems(**edits) -> str:
    """The message for the default config with `edits` ({"a.b.c": value}) applied."""
    from cxratlas.config import ConfigError, UserConfig, validate_config

    cfg, mine = yaml.safe_load((REPO / "config/config.yaml").read_text()), {}
    for key, value in edits.items():
        *parents, last = key.split(".")
        for node in (cfg, mine):
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
    try:
        validate_config(cfg, UserConfig((("mine.yaml", mine),)))
    except ConfigError as exc:
        message = str(exc)
        assert not [d for d in SCHEMA_DUMP if d in message], message
        return message
    raise AssertionError(f"{edits}: no error")


def test_an_unknown_key_names_the_nearest_valid_one():
    message = _problems(**{"dataset.keep_colums": ["site"]})
    assert message.splitlines() == [
        "invalid config:",
        "  dataset.keep_colums: unknown key (in mine.yaml); did you mean 'keep_columns'?",
        "    keys allowed in dataset: name, preset, id_prefix, keep_columns, manifest, "
        "image_root, labels, split, tables, columns, label_columns, on_missing_image, "
        "dicom_tags, demo",
    ]


def test_unknown_keys_everywhere_a_key_is_checked():
    cases = {
        "models.pixels_32.imag_size": (
            "models.pixels_32.imag_size: unknown key (in mine.yaml); did you mean 'image_size'?",
            "keys allowed in a 'pixels' model: kind, intensity, batch_size, image_size, pca, "
            "pca_fit_n",
        ),
        "reduce.knn.hnsw_ef_serch": (
            "did you mean 'hnsw_ef_search'?",
            "keys allowed in reduce.knn",
        ),
        "analysis.shortcuts.min_grup": ("did you mean 'min_group'?", "keys allowed in"),
        "sampel": ("sampel: unknown key (in mine.yaml); did you mean 'sample'?", "allowed in (top"),
    }
    for key, expected in cases.items():
        message = _problems(**{key: 1})
        assert len(message.splitlines()) == 3, message
        for text in expected:
            assert text in message, (key, message)
    message = _problems(datasets=[{"preset": "generic", "manfest": "b.csv", "name": "b"}])
    assert "datasets[0].manfest: unknown key (in mine.yaml); did you mean 'manifest'?" in message


def test_a_wrong_value_names_the_allowed_ones():
    kind = _problems(**{"models.rad_dino": {"kind": "pixel"}})
    assert kind.splitlines()[1:] == [
        "  models.rad_dino.kind: 'pixel' is not allowed (in mine.yaml); did you mean 'pixels'?",
        "    allowed values: pixels, hf_automodel, hf_vision_tower, timm, open_clip, precomputed",
    ]
    device = _problems(**{"extract.device": "gpu"})  # not 'cpu': no near value is offered
    assert device.splitlines()[1:] == [
        "  extract.device: 'gpu' is not allowed (in mine.yaml)",
        "    allowed values: auto, cpu, cuda",
    ]
    assert _problems(**{"sample.n": "all"}).splitlines()[1] == (
        "  sample.n: 'all' is not an integer or null (in mine.yaml)"
    )
    assert _problems(**{"reduce.pca": "some"}).splitlines()[1:] == [
        "  reduce.pca: 'some' is not allowed (in mine.yaml)",
        "    expected one of: an integer or null >= 2 | 'auto'",
    ]
    assert "  extract.shard_size: 0 is less than the minimum of 1 (in mine.yaml)" in _problems(
        **{"extract.shard_size": 0}
    )
    assert "models.1bad: the name '1bad' does not match" in _problems(
        **{"models.1bad": {"kind": "pixels"}}
    )


def test_a_model_without_its_kind_is_one_problem():
    """Not one per kind whose `if` an absent kind would pass."""
    assert _problems(**{"models.m": {"weights": "x"}}).splitlines() == [
        "invalid config:",
        "  models.m: required key(s) missing: 'kind' (in mine.yaml)",
    ]


def test_many_problems_are_counted_past_the_first_few():
    from cxratlas.config_errors import MAX_SHOWN

    sections = ["atlas", "extract", "privacy", "reduce", "reduce.knn", "reduce.umap", "sample"]
    assert len(sections) > MAX_SHOWN
    lines = _problems(**{f"{s}.typo": 1 for s in sections}).splitlines()
    assert lines[0] == f"invalid config ({len(sections)} problems):"
    assert lines[-1] == f"  ... and {len(sections) - MAX_SHOWN} more"
    assert len(lines) == 2 * MAX_SHOWN + 2  # a problem and its allowed keys, each


def test_defaults_are_filled_one_copy_each():
    from cxratlas.config import validate_config

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["datasets"] = [{"preset": "generic", "manifest": "b.csv", "name": "b"}]
    cfg["models"]["vit"] = {"kind": "pixels"}
    validate_config(cfg)
    first, second = cfg["dataset"], cfg["datasets"][0]
    assert first["keep_columns"] == [] and first["on_missing_image"] == "drop"
    assert first["keep_columns"] is not second["keep_columns"]  # not one shared list
    assert cfg["models"]["vit"] == {"kind": "pixels", "batch_size": 32, "image_size": 32,
                                    "pca": None, "pca_fit_n": 2000}  # fmt: skip


def test_what_the_user_wrote_is_told_from_the_defaults(tmp_path):
    from cxratlas.config import UserConfig

    defaults = REPO / "config/config.yaml"
    first = {"sample": {"stratify_by": ["view_position"], "n": 10}}
    second = {"sample": {"n": 20}, "datasets": [{"preset": "generic", "keep_columns": ["a"]}]}
    user = UserConfig.of(
        [
            ("a.yaml", first),
            ("b.yaml", second),
            (str(defaults), yaml.safe_load(defaults.read_text())),
        ],
        {"reduce": {"k": 5}},
        defaults=defaults,  # passed again as a --configfile: still the defaults
    )
    assert user.wrote("sample.stratify_by") and user.source(["sample", "stratify_by"]) == "a.yaml"
    assert user.source(["sample", "n"]) == "b.yaml"
    assert user.source(["datasets", 0, "keep_columns"]) == "b.yaml"
    assert user.source(["datasets", 1]) is None
    assert user.source(["reduce", "k"]) == "--config"
    assert not user.wrote("privacy.atlas_columns") and not user.wrote("sample.seed")


# Through the workflow: `snakemake -n` with the user's config, as a user runs it.


def _dry_run(workdir: Path, config: dict, *args: str):
    from workflow_runs import snakemake

    (workdir / "test.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(REPO, workdir, "-n", *args, check=False)
    return proc, (proc.stdout + proc.stderr).strip()


@pytest.mark.workflow
@pytest.mark.parametrize(
    "config, problem",
    [
        ({"dataset": {"keep_colums": ["site"]}},
         "dataset.keep_colums: unknown key (in {file}); did you mean 'keep_columns'?"),
        ({"models": {"pixels_32": {"kind": "pixels", "imag_size": 16}}},
         "models.pixels_32.imag_size: unknown key (in {file}); did you mean 'image_size'?"),
        ({"datasets": [{"preset": "generic", "manfest": "b.csv", "name": "b"}]},
         "datasets[0].manfest: unknown key (in {file}); did you mean 'manifest'?"),
        ({"reduce": {"umap": {"min_dsit": 0.2}}},
         "reduce.umap.min_dsit: unknown key (in {file}); did you mean 'min_dist'?"),
    ],
)  # fmt: skip
def test_a_misspelt_key_stops_the_workflow_in_a_few_lines(tmp_path, config, problem):
    proc, out = _dry_run(tmp_path, config)
    assert proc.returncode != 0
    assert problem.format(file=tmp_path / "test.yaml") in out, out
    assert "(stopped before any job: nothing under results/ was changed)" in out
    assert not [d for d in SCHEMA_DUMP if d in out], out
    assert len(out.splitlines()) <= 8, out  # was 150 and more: the schema and the instance
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_a_default_column_the_manifest_lacks_gives_way_a_written_one_stops(tmp_path):
    """A manifest of only image_id and path: the default `stratify_by: [view_position]` and
    atlas columns give way (one info line); written by the user, the same stratify_by stops the
    plan, also with `n: null`, where nothing is drawn; so does a column's original name."""
    from workflow_runs import minimal_config, write_minimal_archive

    manifest = write_minimal_archive(tmp_path)
    proc, out = _dry_run(tmp_path, minimal_config(manifest))
    assert proc.returncode == 0, out
    assert (
        "defaults left out, their columns not in the manifest: sample.stratify_by "
        "['view_position']; privacy.atlas_columns ['patient_id', 'study_id', 'view_position', "
        "'manufacturer', 'sex', 'age', 'study_year']"
    ) in out.splitlines()
    written = minimal_config(manifest, sample={"n": None, "stratify_by": ["view_position"]})
    proc, out = _dry_run(tmp_path, written)
    assert proc.returncode != 0
    assert (
        f"sample.stratify_by (in {tmp_path / 'test.yaml'}): column(s) ['view_position'] are not "
        "in the manifest (columns: ['image_id', 'path', 'rel_path', 'dataset'])"
    ) in out.splitlines(), out
    assert len(out.splitlines()) <= 8 and not (tmp_path / "results").exists(), out
    # the same through --config
    proc, out = _dry_run(tmp_path, minimal_config(manifest), "--config",
                         "privacy={atlas_columns: [sex]}")  # fmt: skip
    assert "privacy.atlas_columns (in --config): column(s) ['sex'] are not in the manifest" in out
    assert len(out.splitlines()) <= 8, out
    views = pd.read_csv(manifest).assign(ViewPosition=["PA", "AP"] * 20)
    views.to_csv(manifest, index=False)
    renamed = minimal_config(manifest, sample={"stratify_by": ["ViewPosition"]})
    renamed["dataset"]["columns"] = {"view_position": "ViewPosition"}
    proc, out = _dry_run(tmp_path, renamed)
    assert "'ViewPosition' is renamed to 'view_position' by dataset.columns: write " in out, out
    assert len(out.splitlines()) <= 8, out
    renamed["sample"]["stratify_by"] = ["view_position"]
    proc, out = _dry_run(tmp_path, renamed)
    assert proc.returncode == 0, out
