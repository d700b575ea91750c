"""A timm architecture loaded from a release's own checkpoint, remapped to timm's keys.

MedImageInsight: timm's Florence-2 DaViT (`davit_huge_fl`) is the release's image encoder; its
`image_encoder.*` tensors are remapped, loaded strictly, and the pooled feature is multiplied by
the release's `image_projection` and L2-normalised (UniCL `encode_image`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

from cxratlas.embed.models.base import ModelConfigError, TorchEmbedder
from cxratlas.embed.models.preprocess import ImageTransform
from cxratlas.embed.models.weights import check_sha256, load_state_dict, local_weights

log = logging.getLogger(__name__)


def _remap_davit(state: dict[str, Any], model: Any) -> dict[str, Any]:
    """MSFT/Florence DaViT keys -> timm's (timm converts `vision_tower.*`; norms -> head.norm)."""
    from timm.models.davit import checkpoint_filter_fn

    state = {"vision_tower." + k: v for k, v in state.items()}
    return {
        k.replace("norms.", "head.norm."): v for k, v in checkpoint_filter_fn(state, model).items()
    }


REMAPS = {"none": lambda state, model: state, "davit": _remap_davit}


class TimmStateDictEmbedder(TorchEmbedder):
    kind = "timm"
    channels_last = True

    def __init__(
        self, name: str, entry: dict[str, Any], state_path: str | None = None, device: str = "auto"
    ):
        super().__init__(name, entry, device)
        import timm
        import torch

        for key in ("architecture", "checkpoint", "preprocess"):
            if not entry.get(key):
                raise ModelConfigError(f"model {name!r}: {key!r} is required for kind 'timm'")
        remap = entry.get("remap", "none")
        if remap not in REMAPS:
            raise ModelConfigError(
                f"model {name!r}: remap must be one of {sorted(REMAPS)}, not {remap!r}"
            )
        self.transform = ImageTransform.from_entry(name, entry["preprocess"])
        ckpt = local_weights(name, entry, [entry["checkpoint"]]) / entry["checkpoint"]
        if not ckpt.is_file():
            raise ModelConfigError(f"model {name!r}: checkpoint file {str(ckpt)!r} not found")
        check_sha256(name, entry, ckpt)  # a third-party repackage can change under a study
        raw = load_state_dict(ckpt)
        prefix = entry.get("key_prefix", "")
        state = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
        if not state:
            raise ModelConfigError(
                f"model {name!r}: no tensor in {ckpt} starts with key_prefix {prefix!r}"
            )
        self.model = timm.create_model(
            entry["architecture"], pretrained=False, num_classes=0, **entry.get("model_args", {})
        )
        try:  # strict: a silently random layer would make every embedding meaningless
            self.model.load_state_dict(REMAPS[remap](state, self.model), strict=True)
        except RuntimeError as exc:
            raise ModelConfigError(
                f"model {name!r}: {ckpt} does not fit {entry['architecture']} "
                f"(remap {remap!r}): {str(exc)[:400]}"
            ) from exc
        self.projection = None
        if entry.get("projection_key"):
            if entry["projection_key"] not in raw:
                raise ModelConfigError(
                    f"model {name!r}: projection_key {entry['projection_key']!r} not in {ckpt}"
                )
            self.projection = torch.nn.Parameter(raw[entry["projection_key"]], requires_grad=False)
            self.model.register_parameter("cxr_atlas_projection", self.projection)
        self.normalize = bool(entry.get("normalize", self.projection is not None))
        self.finish_setup()
        log.info(
            "loaded %s (%s, %d tensors) on %s as %s",
            name,
            entry["architecture"],
            len(state),
            self.device,
            self.dtype_name,
        )

    def preprocess(self, img: Image.Image) -> np.ndarray:
        return self.transform(img)

    def forward(self, x: Any) -> Any:
        import torch.nn.functional as F

        feat = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        if self.projection is not None:
            feat = feat @ self.model.cxr_atlas_projection
        return F.normalize(feat.float(), dim=-1) if self.normalize else feat
