"""Explicit image preprocessing for models whose authors publish numbers, not a processor file.

An entry's `preprocess` block (size, resize mode, interpolation, mean/std) becomes an
`ImageTransform`: PIL + NumPy only, so it pickles into DataLoader workers and gives the same
tensor on a CPU CI runner and a GPU node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cxratlas.embed.models.base import ModelConfigError

# Named statistics, as the model cards and code releases give them.
STATS: dict[str, tuple[float, float, float]] = {
    "imagenet_mean": (0.485, 0.456, 0.406),
    "imagenet_std": (0.229, 0.224, 0.225),
    "clip_mean": (0.48145466, 0.4578275, 0.40821073),
    "clip_std": (0.26862954, 0.26130258, 0.27577711),
    "half_mean": (0.5, 0.5, 0.5),
    "half_std": (0.5, 0.5, 0.5),
}
INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZE_MODES = ("squash", "shortest_edge_crop")


def _stats(name: str, value: Any, which: str) -> tuple[float, float, float]:
    if isinstance(value, str):
        key = f"{value}_{which}"
        if key not in STATS:
            names = sorted({k.rsplit("_", 1)[0] for k in STATS})
            raise ModelConfigError(
                f"model {name!r}: preprocess.{which} {value!r} is not one of {names} "
                "or a list of three numbers"
            )
        return STATS[key]
    values = [float(v) for v in (value if isinstance(value, list | tuple) else [value])]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ModelConfigError(f"model {name!r}: preprocess.{which} needs 1 or 3 numbers")
    return tuple(values)  # type: ignore[return-value]


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> float32 array (3, H, W), normalised; grey is made RGB first, explicitly,
    as the authors' code does (`Image.open(...).convert("RGB")`)."""

    height: int
    width: int
    resize: str
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_entry(cls, name: str, block: dict[str, Any]) -> ImageTransform:
        size = block.get("size")
        if size is None:
            raise ModelConfigError(f"model {name!r}: preprocess.size is required")
        h, w = (size, size) if isinstance(size, int) else size
        resize = block.get("resize", "squash")
        if resize not in RESIZE_MODES:
            raise ModelConfigError(
                f"model {name!r}: preprocess.resize must be one of {RESIZE_MODES}, not {resize!r}"
            )
        interp = block.get("interpolation", "bicubic")
        if interp not in INTERPOLATION:
            raise ModelConfigError(
                f"model {name!r}: preprocess.interpolation must be one of "
                f"{sorted(INTERPOLATION)}, not {interp!r}"
            )
        return cls(
            int(h),
            int(w),
            resize,
            interp,
            _stats(name, block.get("mean", "imagenet"), "mean"),
            _stats(name, block.get("std", "imagenet"), "std"),
        )

    def __call__(self, img: Image.Image) -> np.ndarray:
        img = img.convert("RGB")
        resample = INTERPOLATION[self.interpolation]
        if self.resize == "squash":
            img = img.resize((self.width, self.height), resample)
        else:  # resize the shorter side, then crop the centre (CLIP-style)
            scale = max(self.width / img.width, self.height / img.height)
            new = (
                max(self.width, round(img.width * scale)),
                max(self.height, round(img.height * scale)),
            )
            img = img.resize(new, resample)
            left, top = (new[0] - self.width) // 2, (new[1] - self.height) // 2
            img = img.crop((left, top, left + self.width, top + self.height))
        x = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return (x - mean) / std

    @property
    def input_size(self) -> tuple[int, int]:
        return self.height, self.width
