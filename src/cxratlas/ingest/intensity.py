"""How a film's stored values become the 8-bit grey image a model's processor receives.

There is no one right conversion: each model's authors prepare pixels their own way, and a
model fed another vendor's conversion sees a different film. So a film is decoded once into a
`Film` (its stored values after the modality LUT, the display window it carries, whether it is
shown inverted) and every model entry converts it with its own `intensity:` block:

    intensity:
      dicom: window          # window | percentile | minmax: DICOM stored values -> 0..1
      fallback: minmax       # a DICOM that stores no window: minmax | percentile
      stretch: true          # after the window, min-max over the windowed film
      voi_lut: true          # use a VOI LUT Sequence where the file has one
      sixteen_bit: full_range  # 16-bit PNG/TIFF: minmax | percentile | full_range (value / 65535)
      percentiles: [1, 99]
      source: "..."          # whose code these settings follow

8-bit files (JPEG, 8-bit PNG) are passed through unchanged whatever the block says: every
seed model's authors feed such files to their processor as they are. MONOCHROME1 and
Presentation LUT Shape INVERSE are shown bone-bright for every model (one inversion: for DX
images the INVERSE shape is how MONOCHROME1 is displayed, PS3.3 C.8.11.6.1.2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

DICOM_MODES = ("window", "percentile", "minmax")
FALLBACKS = ("percentile", "minmax")
SIXTEEN_BIT_MODES = ("minmax", "percentile", "full_range")


class IntensityError(ValueError):
    """A model's `intensity:` block that cannot be used; the message names the model and key."""


@dataclass(frozen=True)
class Film:
    """A decoded film before any model's conversion: `values` are the stored values (after
    the modality LUT for DICOM) as float64, `kind` says where they came from."""

    values: np.ndarray
    kind: str  # "8bit" (passed through) | "16bit" (a PNG/TIFF) | "dicom"
    window: tuple[float, float, str] | None = None  # first stored VOI window
    voi: np.ndarray | None = None  # the film through its VOI LUT Sequence, 0..1
    invert: bool = False  # MONOCHROME1 or Presentation LUT Shape INVERSE
    full_scale: float = 255.0  # the stored type's maximum (65535 for 16 bits)


@dataclass(frozen=True)
class Intensity:
    """One model's conversion of a `Film` to 8 bits (the module docstring lists the keys)."""

    dicom: str = "window"
    fallback: str = "percentile"
    stretch: bool = False
    voi_lut: bool = True
    sixteen_bit: str = "minmax"
    percentiles: tuple[float, float] = (0.5, 99.5)
    source: str = field(default="", compare=False)

    @classmethod
    def from_entry(cls, name: str, block: dict[str, Any] | None) -> Intensity:
        """The block of model `name`, its missing keys from `DISPLAY`."""
        if not block:
            return DISPLAY
        unknown = set(block) - set(cls.__dataclass_fields__)
        if unknown:
            raise IntensityError(
                f"model {name!r}: unknown intensity key(s) {sorted(unknown)}; "
                f"known: {sorted(cls.__dataclass_fields__)}"
            )
        for key, allowed in (("dicom", DICOM_MODES), ("fallback", FALLBACKS),
                             ("sixteen_bit", SIXTEEN_BIT_MODES)):  # fmt: skip
            if key in block and block[key] not in allowed:
                raise IntensityError(
                    f"model {name!r}: intensity.{key} must be one of {list(allowed)}, "
                    f"not {block[key]!r}"
                )
        lo, hi = (float(p) for p in block.get("percentiles", DISPLAY.percentiles))
        if not 0 <= lo < hi <= 100:
            raise IntensityError(
                f"model {name!r}: intensity.percentiles must be [low, high] within 0..100"
            )
        return cls(**{**asdict(DISPLAY), **block, "percentiles": (lo, hi)})

    @property
    def key(self) -> str:
        """A short, stable name for files (the decode cache keeps one folder per key)."""
        fields = {k: v for k, v in asdict(self).items() if k != "source"}
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.dicom}-{digest}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "percentiles": list(self.percentiles)}

    def to_gray8(self, film: Film) -> np.ndarray:
        """The film as an (H, W) uint8 array, as this model's authors would prepare it."""
        if film.kind == "8bit":
            return film.values.astype(np.uint8)
        if film.kind == "16bit":
            scaled = _scale(film.values, self.sixteen_bit, self.percentiles, film.full_scale)
        else:
            scaled = self._dicom(film)
        scaled = np.clip(scaled, 0.0, 1.0)
        if film.invert:
            scaled = 1.0 - scaled
        return np.round(scaled * 255).astype(np.uint8)

    def _dicom(self, film: Film) -> np.ndarray:
        if self.dicom != "window":
            return _scale(film.values, self.dicom, self.percentiles, film.full_scale)
        if film.voi is not None and self.voi_lut:
            scaled = film.voi
        elif film.window is not None:
            scaled = window(film.values, *film.window)
        else:  # no display window stored
            return _scale(film.values, self.fallback, self.percentiles, film.full_scale)
        scaled = np.clip(scaled, 0.0, 1.0)
        # Google's handler rescales the windowed film to its full range once more
        return _scale(scaled, "minmax", self.percentiles, 1.0) if self.stretch else scaled


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing onto 0..1 (LINEAR, LINEAR_EXACT, SIGMOID)."""
    function = function.upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return (values - center) / width + 0.5
    if width < 1:
        raise IntensityError(f"Window Width {width} < 1 for a LINEAR window")
    return (values - (center - 0.5)) / max(width - 1, 1e-9) + 0.5


def _scale(values: np.ndarray, mode: str, percentiles, full_scale: float) -> np.ndarray:
    """`values` onto 0..1: over their own range, a percentile range, or the type's range."""
    if mode == "full_range":
        return values / full_scale
    if not values.size:
        return values
    if mode == "percentile":
        lo, hi = np.percentile(values, percentiles)
    else:
        lo, hi = float(values.min()), float(values.max())
    return np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)


# The project's own conversion: thumbnails, pixel baselines, and models whose entry says
# nothing (a DICOM's window, else a robust 0.5-99.5 percentile range; 16 bits min-max).
DISPLAY = Intensity(source="cxr-atlas display default")
