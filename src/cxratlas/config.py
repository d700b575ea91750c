"""The workflow's config as every rule sees it."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping


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
