"""Model registry: a model is a config entry; its `kind` names the adapter class that loads it."""

from __future__ import annotations

from typing import Any

from cxratlas.embed.models.base import Embedder, ModelConfigError, intensity_of
from cxratlas.embed.models.hf import HFAutoModelEmbedder, HFVisionTowerEmbedder
from cxratlas.embed.models.open_clip_model import OpenCLIPEmbedder
from cxratlas.embed.models.pixels import PixelEmbedder
from cxratlas.embed.models.precomputed import PrecomputedEmbedder
from cxratlas.embed.models.timm_state_dict import TimmStateDictEmbedder

KINDS: dict[str, type[Embedder]] = {
    cls.kind: cls
    for cls in (
        PixelEmbedder,
        HFAutoModelEmbedder,
        HFVisionTowerEmbedder,
        TimmStateDictEmbedder,
        OpenCLIPEmbedder,
        PrecomputedEmbedder,
    )
}


def embedder_class(name: str, entry: dict[str, Any]) -> type[Embedder]:
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ModelConfigError(
            f"model {name!r}: unknown kind {kind!r}; known kinds are {sorted(KINDS)}"
        )
    return KINDS[kind]


def needs_fit(name: str, entry: dict[str, Any]) -> bool:
    """Whether this model has a fit step on the shared sample before its shards run."""
    return embedder_class(name, entry).needs_fit(entry)


def reads_images(name: str, entry: dict[str, Any]) -> bool:
    """Whether this model's shards decode images (and so read the decode cache)."""
    return embedder_class(name, entry).reads_images


def sample_columns(models: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """Manifest columns the models' shards read from the sample beyond id and path."""
    return tuple(
        dict.fromkeys(
            c
            for name, entry in models.items()
            for c in embedder_class(name, entry).sample_columns(entry)
        )
    )


def load_embedder(
    name: str, entry: dict[str, Any], state_path: str | None = None, device: str = "auto"
) -> Embedder:
    return embedder_class(name, entry)(name, entry, state_path=state_path, device=device)


__all__ = [
    "Embedder",
    "ModelConfigError",
    "KINDS",
    "embedder_class",
    "intensity_of",
    "load_embedder",
    "needs_fit",
    "reads_images",
    "sample_columns",
]
