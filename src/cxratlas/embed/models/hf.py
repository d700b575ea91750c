"""Hugging Face transformers models.

`hf_automodel`: `AutoModel` + `AutoImageProcessor` (RAD-DINO; SigLIP/CLIP-class encoders such as
CheXagent's CXR-adapted SigLIP, through `get_image_features`).
`hf_vision_tower`: only the vision tower of a vision-language checkpoint, loaded into its own
class without the language model (MedGemma's SigLIP tower; CheXagent-8b's BLIP-2-class tower).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxratlas.embed.models.base import ModelConfigError, TorchEmbedder
from cxratlas.embed.models.preprocess import ImageTransform
from cxratlas.embed.models.weights import local_weights, tower_files

log = logging.getLogger(__name__)

POOLINGS = ("pooler", "cls", "mean", "image_features")

# Tower class, and how a checkpoint's tensor names become the class's (regex -> replacement,
# the first that matches; a tensor no pattern matches is not the tower's and is never read).
TOWERS: dict[str, tuple[str, dict[str, str]]] = {
    # MedGemma: `vision_tower.vision_model.*` (as published), `model.vision_tower.*` (saved by
    # transformers 5)
    "siglip": ("SiglipVisionModel", {r"^(?:model\.)?vision_tower\.(?:vision_model\.)?": ""}),
    # CheXagent-2: CheXagentForCausalLM.model.visual (modeling_visual.CLIPModel).model, the
    # SigLIP vision transformer of its XraySigLIP encoder
    "chexagent": ("SiglipVisionModel", {r"^model\.visual\.model\.": ""}),
    "blip2": ("Blip2VisionModel", {r"^vision_model\.": ""}),  # CheXagent-8b
    "clip": ("CLIPVisionModel", {r"^vision_model\.": ""}),  # CLIPModel checkpoints
}
TOWER_POOLINGS = ("pooler", "cls", "mean", "mean_prenorm")


def mapped_key(key: str, mapping: dict[str, str]) -> str | None:
    """`key` renamed by the first pattern of `mapping` that matches it, else None."""
    for pattern, replacement in mapping.items():
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    return None


class _HFEmbedder(TorchEmbedder):
    """Shared by both kinds: the processor (or an explicit transform) and the pooling."""

    def _processor(
        self, path: Any, revision: str | None, trust: bool, overrides: dict | None = None
    ) -> None:
        if self.entry.get("preprocess"):
            self.transform = ImageTransform.from_entry(self.name, self.entry["preprocess"])
            self.processor = None
            return
        from transformers import AutoImageProcessor

        self.transform = None
        # backend="pil": the same tensors on CPU CI and GPU nodes, with or without torchvision.
        self.processor = AutoImageProcessor.from_pretrained(
            path, backend="pil", revision=revision, trust_remote_code=trust, **(overrides or {})
        )

    def preprocess(self, img: Image.Image) -> np.ndarray:
        # grey -> RGB here, not by the processor's own default (`do_convert_rgb` is null in
        # some, e.g. MedGemma's): every model gets three equal channels, as its authors do
        img = img.convert("RGB")
        if self.entry.get("pad_to_square"):
            img = pad_to_square(img)
        if self.transform is not None:
            return self.transform(img)
        return self.processor(images=img, return_tensors="np")["pixel_values"][0]

    def _pool(self, out: Any) -> Any:
        if self.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ModelConfigError(
                    f"model {self.name!r}: {type(self.model).__name__} has no pooler_output; "
                    "use pooling: cls or mean"
                )
            return out.pooler_output
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        return out.last_hidden_state.mean(dim=1)


def pad_to_square(img: Image.Image) -> Image.Image:
    """Black borders on the short sides, the film centred (the extra pixel after it), as
    Google's MedSigLIP serving code pads before resizing (`_zero_pad_image_to_square`: "method
    performed in training")."""
    side = max(img.size)
    out = Image.new(img.mode, (side, side))
    out.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return out


def _pooling(name: str, entry: dict[str, Any], default: str, allowed=POOLINGS) -> str:
    pooling = entry.get("pooling", default)
    if pooling not in allowed:
        raise ModelConfigError(
            f"model {name!r}: pooling must be one of {list(allowed)}, not {pooling!r}"
        )
    return pooling


class HFAutoModelEmbedder(_HFEmbedder):
    kind = "hf_automodel"

    def __init__(
        self, name: str, entry: dict[str, Any], state_path: str | None = None, device: str = "auto"
    ):
        super().__init__(name, entry, device)
        from transformers import AutoModel

        weights = entry.get("weights")
        if not weights:
            raise ModelConfigError(
                f"model {name!r}: 'weights' (hub id or local folder) is required"
            )
        trust = bool(entry.get("trust_remote_code", False))
        self.pooling = _pooling(name, entry, "pooler")
        self.normalize = bool(entry.get("normalize", False))  # SigLIP's image_embeds
        # a local snapshot at the pinned revision (or a clear error in seconds when offline),
        # so transformers itself never goes to the network
        path = local_weights(name, entry)
        self._processor(path, None, trust)
        self.model = AutoModel.from_pretrained(path, dtype=self.dtype, trust_remote_code=trust)
        self.finish_setup()
        log.info(
            "loaded %s (%s) on %s as %s, pooling=%s",
            name,
            type(self.model).__name__,
            self.device,
            self.dtype_name,
            self.pooling,
        )

    def forward(self, x: Any) -> Any:
        import torch.nn.functional as F

        if self.pooling == "image_features":
            # transformers 5 returns BaseModelOutputWithPooling here (4.x: a tensor)
            out = self.model.get_image_features(pixel_values=x)
            vec = out if hasattr(out, "dim") else out.pooler_output
        else:
            vec = self._pool(self.model(pixel_values=x))
        return F.normalize(vec.float(), dim=-1) if self.normalize else vec


class HFVisionTowerEmbedder(_HFEmbedder):
    kind = "hf_vision_tower"

    def __init__(
        self, name: str, entry: dict[str, Any], state_path: str | None = None, device: str = "auto"
    ):
        super().__init__(name, entry, device)
        import transformers

        tower = entry.get("tower", "siglip")
        if tower not in TOWERS:
            raise ModelConfigError(
                f"model {name!r}: tower must be one of {sorted(TOWERS)}, not {tower!r}"
            )
        class_name, default_mapping = TOWERS[tower]
        cls = getattr(transformers, class_name)
        self.pooling = _pooling(name, entry, "mean", TOWER_POOLINGS)
        mapping = entry.get("key_mapping") or default_mapping
        # the config and processor files, then only the shards that hold the tower's tensors:
        # a VLM's language model, tokenizer and code stay behind
        path, shards = tower_files(name, entry, list(mapping))
        config_dir = self._config_dir(name, entry, path)
        config = cls.config_class(**self._tower_fields(name, entry, config_dir))
        self._processor(config_dir, None, False, _overrides(entry, config))
        self.model = _load_tower(name, cls, config, tower_tensors(path, shards, mapping))
        self.finish_setup()
        log.info("loaded the %s tower of %s from %d of its shards on %s as %s",
                 class_name, entry.get("weights"), len(shards), self.device,
                 self.dtype_name)  # fmt: skip

    @staticmethod
    def _config_dir(name: str, entry: dict[str, Any], path: Path) -> Path:
        """Where the tower's config and processor live: the checkpoint's folder, or another
        repo (`config_from`: CheXagent-2 builds its tower from the XraySigLIP repo's config)."""
        source = entry.get("config_from")
        if not source:
            return path
        return local_weights(f"{name} (config_from)", source, ["*.json"])

    @staticmethod
    def _tower_fields(name: str, entry: dict[str, Any], config_dir: Path) -> dict[str, Any]:
        """The tower's config fields, read raw so custom model types (CheXagent's) need no
        remote code."""
        key = entry.get("config_key", "vision_config")
        top = json.loads((config_dir / "config.json").read_text())
        sub = top.get(key)
        if not isinstance(sub, dict):
            raise ModelConfigError(
                f"model {name!r}: {config_dir / 'config.json'} has no {key!r} section"
            )
        return {k: v for k, v in sub.items() if k not in ("model_type", "architectures")}

    def forward(self, x: Any) -> Any:
        if self.pooling == "mean_prenorm":  # the last encoder layer, before the final norm
            out = self.model(pixel_values=x, output_hidden_states=True)
            return out.hidden_states[-1].mean(dim=1)
        return self._pool(self.model(pixel_values=x))


def _overrides(entry: dict[str, Any], config: Any) -> dict[str, Any]:
    """`processor_overrides`, where `size: tower` is the tower config's own `image_size`:
    CheXagent-2 resizes to `config.visual.image_size` and feeds the tower with no position
    embedding interpolation, so in a checkpoint that runs the two are equal, and the tower
    config the entry reads already says which it is."""
    overrides = dict(entry.get("processor_overrides") or {})
    if overrides.get("size") == "tower":
        overrides["size"] = {"height": config.image_size, "width": config.image_size}
    return overrides


def tower_tensors(path: Path, shards: list[str], mapping: dict[str, str]) -> dict[str, Any]:
    """The tensors of `shards` whose names `mapping` (regex -> replacement, first match)
    takes to the tower class's names, renamed; every other tensor is never read."""
    from safetensors import safe_open

    out = {}
    for shard in shards:
        with safe_open(str(path / shard), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                new = mapped_key(key, mapping)
                if new is not None:
                    out[new] = f.get_tensor(key)
    return out


def _load_tower(name: str, cls: Any, config: Any, state: dict[str, Any]) -> Any:
    """The tower class built without random initialisation and filled from `state`; a tower
    weight missing from it is an error (random weights would give meaningless embeddings)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights

    with no_init_weights():
        model = cls(config)
    info = model.load_state_dict(state, strict=False)
    if info.missing_keys:
        missing = sorted(info.missing_keys)
        raise ModelConfigError(
            f"model {name!r}: {len(missing)} {cls.__name__} weights are not in the checkpoint "
            f"(first: {missing[:3]}); it does not match the tower or its key_mapping, and "
            "random weights would give meaningless embeddings"
        )
    if info.unexpected_keys:
        log.warning("model %r: %d tower tensors the %s does not use (first: %s)", name,
                    len(info.unexpected_keys), cls.__name__, info.unexpected_keys[:3])  # fmt: skip
    return model
