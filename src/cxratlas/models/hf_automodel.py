"""Hugging Face `AutoModel` + `AutoImageProcessor` (RAD-DINO, SigLIP/CLIP-class towers, ...)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

from .base import Embedder, ModelConfigError

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("extract.device is 'cuda' but torch sees no CUDA device on this node")
    return device


class HFAutoModelEmbedder(Embedder):
    kind = "hf_automodel"

    def __init__(
        self, name: str, entry: dict[str, Any], state_path: str | None = None, device: str = "auto"
    ):
        super().__init__(name, entry)
        import torch
        from transformers import AutoImageProcessor, AutoModel

        weights = entry.get("weights")
        if not weights:
            raise ModelConfigError(
                f"model {name!r}: 'weights' (hub id or local folder) is required"
            )
        revision = entry.get("revision")
        trust = bool(entry.get("trust_remote_code", False))
        if trust and not revision:
            raise ModelConfigError(
                f"model {name!r}: trust_remote_code needs a pinned 'revision' (a commit hash), "
                "so the code that runs is the code you reviewed"
            )
        self.pooling = entry.get("pooling", "pooler")
        if self.pooling not in ("cls", "pooler", "mean"):
            raise ModelConfigError(
                f"model {name!r}: pooling must be cls, pooler or mean, not {self.pooling!r}"
            )
        self.device = resolve_device(device)
        # bf16/fp16 only where they pay off: on a GPU. CPU runs stay float32.
        dtype_name = entry.get("dtype", "bfloat16") if self.device == "cuda" else "float32"
        self.dtype = getattr(torch, dtype_name)
        kwargs = {"revision": revision, "trust_remote_code": trust}
        # backend="pil": the same tensors on CPU CI and GPU nodes, with or without torchvision.
        self.processor = AutoImageProcessor.from_pretrained(weights, backend="pil", **kwargs)
        self.model = AutoModel.from_pretrained(weights, dtype=self.dtype, **kwargs)
        self.model.eval().to(self.device)
        self._dim: int | None = None
        log.info(
            "loaded %s (%s) on %s as %s, pooling=%s",
            name,
            type(self.model).__name__,
            self.device,
            dtype_name,
            self.pooling,
        )

    def preprocess(self, img: Image.Image) -> np.ndarray:
        return self.processor(images=img, return_tensors="np")["pixel_values"][0]

    def embed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.as_tensor(np.asarray(batch)).to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.model(pixel_values=x)
        if self.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ModelConfigError(
                    f"model {self.name!r}: {type(self.model).__name__} has no "
                    "pooler_output; use pooling: cls or mean"
                )
            vec = out.pooler_output
        elif self.pooling == "cls":
            vec = out.last_hidden_state[:, 0]
        else:
            vec = out.last_hidden_state.mean(dim=1)
        return vec.float().cpu().numpy()

    @property
    def dim(self) -> int:
        if self._dim is None:
            size = (
                self.processor.crop_size
                if getattr(self.processor, "do_center_crop", False)
                else self.processor.size
            )
            h = size.get("height") or size.get("shortest_edge")
            w = size.get("width") or size.get("shortest_edge")
            probe = Image.new("L", (w, h))
            self._dim = int(self.embed(self.preprocess(probe)[None]).shape[1])
        return self._dim
