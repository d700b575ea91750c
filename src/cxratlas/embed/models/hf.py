"""Hugging Face transformers models.

`hf_automodel`: `AutoModel` + `AutoImageProcessor` (RAD-DINO; SigLIP/CLIP-class encoders such as
CheXagent's CXR-adapted SigLIP, through `get_image_features`).
`hf_vision_tower`: only the vision tower of a vision-language checkpoint, loaded into its own
class without the language model (MedGemma's SigLIP tower; CheXagent-8b's BLIP-2-class tower).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from PIL import Image

from cxratlas.embed.models.base import ModelConfigError, TorchEmbedder
from cxratlas.embed.models.preprocess import ImageTransform
from cxratlas.embed.models.weights import local_weights

log = logging.getLogger(__name__)

POOLINGS = ("pooler", "cls", "mean", "image_features")

# Tower class -> checkpoint key prefixes to strip (transformers-5 layout first, then the hub's).
TOWERS: dict[str, tuple[str, dict[str, str]]] = {
    "siglip": (
        "SiglipVisionModel",
        {
            r"^model\.vision_tower\.vision_model\.": "",
            r"^vision_tower\.vision_model\.": "",
            r"^model\.vision_tower\.": "",
            r"^vision_tower\.": "",
        },
    ),
    "blip2": ("Blip2VisionModel", {r"^vision_model\.": ""}),
    "clip": ("CLIPVisionModel", {}),  # CLIPModel checkpoints already use vision_model.*
}


class _HFEmbedder(TorchEmbedder):
    """Shared by both kinds: the processor (or an explicit transform) and the pooling."""

    def _processor(self, path: Any, revision: str | None, trust: bool) -> None:
        if self.entry.get("preprocess"):
            self.transform = ImageTransform.from_entry(self.name, self.entry["preprocess"])
            self.processor = None
            return
        from transformers import AutoImageProcessor

        self.transform = None
        # backend="pil": the same tensors on CPU CI and GPU nodes, with or without torchvision.
        self.processor = AutoImageProcessor.from_pretrained(
            path, backend="pil", revision=revision, trust_remote_code=trust
        )

    def preprocess(self, img: Image.Image) -> np.ndarray:
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
        if self.pooling == "image_features":
            # transformers 5 returns BaseModelOutputWithPooling here (4.x: a tensor)
            out = self.model.get_image_features(pixel_values=x)
            return out if hasattr(out, "dim") else out.pooler_output
        return self._pool(self.model(pixel_values=x))


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
        self.pooling = _pooling(name, entry, "mean", ("pooler", "cls", "mean"))
        # Only the config, processor and weight files: a VLM's tokenizer and code stay behind.
        path = local_weights(name, entry, ["*.json", "*.safetensors", "*.safetensors.index.json"])
        top = json.loads((path / "config.json").read_text())
        sub = top.get(entry.get("config_key", "vision_config"))
        if not isinstance(sub, dict):
            raise ModelConfigError(
                f"model {name!r}: {path / 'config.json'} has no "
                f"{entry.get('config_key', 'vision_config')!r} section"
            )
        # Build the tower's own config class from the raw section: custom model types
        # (CheXagent's) need no remote code this way.
        fields = {k: v for k, v in sub.items() if k not in ("model_type", "architectures")}
        config = cls.config_class(**fields)
        self._processor(path, None, False)  # `path` is already the pinned local snapshot
        self.model, info = cls.from_pretrained(
            path,
            config=config,
            dtype=self.dtype,
            key_mapping=entry.get("key_mapping") or default_mapping or None,
            output_loading_info=True,
        )
        if info.get("missing_keys"):
            missing = sorted(info["missing_keys"])
            raise ModelConfigError(
                f"model {name!r}: {len(missing)} {class_name} weights are not in {path} "
                f"(first: {missing[:3]}); the checkpoint does not match tower {tower!r} "
                "or its key_mapping, and random weights would give meaningless embeddings"
            )
        self.finish_setup()
        log.info(
            "loaded the %s tower of %s (%d checkpoint tensors left out) on %s as %s",
            class_name,
            entry.get("weights"),
            len(info.get("unexpected_keys", [])),
            self.device,
            self.dtype_name,
        )

    def forward(self, x: Any) -> Any:
        return self._pool(self.model(pixel_values=x))
