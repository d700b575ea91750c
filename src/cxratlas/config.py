"""The workflow's config as every rule sees it: checked against the schema, with each mistake
told in a few lines; what the user wrote told apart from the defaults it merges over; model
entries in a stable key order."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cxratlas.config_errors import error_text

SCHEMA_PATH = Path(__file__).parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not fit the schema; the message names each key that is wrong."""


@dataclass(frozen=True)
class UserConfig:
    """What the user wrote, layer by layer (each `--configfile` in order, then `--config`), as
    opposed to the defaults (`config/config.yaml`) those layers merge over.

    A default may not fit every manifest (`stratify_by: [view_position]` on a manifest without a
    view column); it then gives way, while the same value written by the user is an error. So
    the question is who set a key, not what its value is: a user who writes the default value
    has still asked for it."""

    layers: tuple[tuple[str, Mapping], ...] = ()
    defaults: str = "config/config.yaml"

    @classmethod
    def of(
        cls,
        configfiles: Iterable[tuple[str, Mapping]],
        overrides: Mapping | None,
        defaults: str | Path,
    ) -> UserConfig:
        """Layers from (file, content) pairs and the `--config` values; the defaults file
        passed again as a `--configfile` holds defaults, not choices."""
        default = Path(defaults).resolve()
        layers = [(str(f), dict(c or {})) for f, c in configfiles if Path(f).resolve() != default]
        if overrides:
            layers.append(("--config", dict(overrides)))
        return cls(tuple(layers), str(defaults))

    def source(self, path: Sequence[str | int]) -> str | None:
        """The last layer that sets `path` (keys and list positions), or None: a default."""
        for name, layer in reversed(self.layers):
            if _has(layer, path):
                return name
        return None

    def wrote(self, key: str) -> bool:
        """Whether the user set the dotted `key` (e.g. `sample.stratify_by`)."""
        return self.source(key.split(".")) is not None


def _has(node, path: Sequence[str | int]) -> bool:
    for step in path:
        in_list = isinstance(node, list) and isinstance(step, int) and step < len(node)
        if not (in_list or (isinstance(node, Mapping) and step in node)):
            return False
        node = node[step]
    return True


def validate_config(
    config: MutableMapping, user: UserConfig | None = None, schema_path: Path = SCHEMA_PATH
) -> None:
    """Check `config` against the schema and fill the schema's defaults in place (as
    `snakemake.utils.validate` does); every error is told in a few lines naming its key, the
    layer it came from, the nearest valid key or the allowed values, never the schema."""
    import yaml
    from jsonschema import Draft202012Validator

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _filling_defaults(Draft202012Validator)(schema)
    errors = list(validator.iter_errors(config))
    if errors:
        raise ConfigError(error_text(errors, user.source if user else None))


def _filling_defaults(validator_class):
    """The validator, extended to set each absent property's default (a copy of it: a shared
    `[]` default would be one list in every dataset entry)."""
    from jsonschema import validators

    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    return validators.extend(validator_class, {"properties": properties})


def sort_model_entries(config: MutableMapping) -> None:
    """Sort the keys inside each model entry, in place, keeping the models' own order.

    The shard and fit jobs take the entry as a param, and Snakemake records a param's repr: the
    same entry written in another key order (a config rewritten by a tool, keys moved by hand)
    would read as changed params and rerun every shard of the model on a GPU. The models' order
    is kept: the atlas and the report show them in it.
    """
    config["models"] = {name: _sorted(entry) for name, entry in config["models"].items()}


def _sorted(value):
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value
