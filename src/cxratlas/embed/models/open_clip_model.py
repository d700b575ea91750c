"""open_clip models (BiomedCLIP): `encode_image` with the release's own eval transform."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

from cxratlas.embed.models.base import ModelConfigError, TorchEmbedder
from cxratlas.embed.models.weights import local_weights

log = logging.getLogger(__name__)


class OpenCLIPEmbedder(TorchEmbedder):
    kind = "open_clip"

    def __init__(
        self, name: str, entry: dict[str, Any], state_path: str | None = None, device: str = "auto"
    ):
        super().__init__(name, entry, device)
        import open_clip

        path = local_weights(
            name, entry, ["open_clip_config.json", "open_clip_pytorch_model.bin", "*.safetensors"]
        )
        if not (path / "open_clip_config.json").is_file():
            raise ModelConfigError(f"model {name!r}: {path} has no open_clip_config.json")
        # The text tower is built too (open_clip has no vision-only load); for BiomedCLIP its
        # BERT config must be in the HF cache when offline (docs/models.md, 'Model weights').
        model, _, self.transform = open_clip.create_model_and_transforms(f"local-dir:{path}")
        self.model = model
        self.normalize = bool(entry.get("normalize", False))
        self.finish_setup()
        log.info("loaded %s (open_clip, %s) on %s as %s", name, path, self.device, self.dtype_name)

    def preprocess(self, img: Image.Image) -> np.ndarray:
        return self.transform(img.convert("RGB")).numpy()  # grey -> RGB explicitly

    def forward(self, x: Any) -> Any:
        return self.model.encode_image(x, normalize=self.normalize)
