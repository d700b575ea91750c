"""Decode any supported image file into a `Film`, and that into the 8-bit grayscale a model starts
from, converted the way the model's authors convert it (`cxratlas.ingest.intensity`)."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps

from cxratlas.ingest.dicom import DicomError, dicom_film, is_dicom
from cxratlas.ingest.intensity import DISPLAY, Film, Intensity, IntensityError

# Decompression-bomb guard stays on, but real CXRs (up to ~4k x 5k) must pass.
Image.MAX_IMAGE_PIXELS = 80_000_000


class ImageLoadError(Exception):
    """An image that cannot be used; the message names the file and the reason."""


class TooManyUnreadableError(RuntimeError):
    """Most of a shard's images failed: a systemic fault (a missing mount), not bad files."""


def check_unreadable(reasons: list[str], total: int, max_fraction: float, what: str) -> None:
    """Fail `what` when more than `max_fraction` of its `total` images could not be read."""
    if total and len(reasons) / total > max_fraction:
        examples = "; ".join(reasons[:3])
        raise TooManyUnreadableError(
            f"{what}: {len(reasons)} of {total} images unreadable (more than "
            f"extract.max_skipped_fraction={max_fraction}); nothing written. First: {examples}"
        )


SIXTEEN_BIT_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "F": 1.0}


def image_film(img: Image.Image) -> Film:
    """A decoded PIL image as a `Film`: 16-bit (and integer/float) images keep their values
    for each model's `Intensity` (HF processors would divide them by 255 and saturate);
    everything else becomes 8-bit grey, transparency composited on black, palettes expanded."""
    img = ImageOps.exif_transpose(img)
    if img.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(img, dtype=np.float64)
        return Film(values, kind="16bit", full_scale=SIXTEEN_BIT_MODES[img.mode])
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return Film(np.asarray(img.convert("L")), kind="8bit")


def to_gray8(img: Image.Image, intensity: Intensity | None = None) -> Image.Image:
    """A decoded PIL image as 8-bit grayscale ('L'), converted by `intensity`."""
    return Image.fromarray((intensity or DISPLAY).to_gray8(image_film(img)), mode="L")


def load_film(path: str | os.PathLike) -> Film:
    """Open `path` (DICOM or any image Pillow reads) as a `Film`, or raise ImageLoadError
    naming the file."""
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes)")
        if is_dicom(path):
            return dicom_film(path)
        with Image.open(path) as img:
            img.load()
            return image_film(img)
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{path}: file not found") from exc
    except DicomError as exc:
        raise ImageLoadError(f"{path}: DICOM: {exc}") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{path}: cannot decode image ({exc})") from exc


def load_gray8(path: str | os.PathLike, intensity: Intensity | None = None) -> Image.Image:
    """Open `path` as 8-bit grayscale, converted by `intensity` (default: the display
    conversion), or raise ImageLoadError naming the file."""
    film = load_film(path)
    try:
        return Image.fromarray((intensity or DISPLAY).to_gray8(film), mode="L")
    except IntensityError as exc:  # e.g. a stored window of width < 1
        raise ImageLoadError(f"{os.fspath(path)}: DICOM: {exc}") from exc


THUMBNAIL_ENCODINGS = {  # what a thumbnail may be stored as (Embedding Atlas sniffs both)
    "png": {"format": "PNG", "optimize": True},  # lossless; 4.4 KB for a 96-px CXR
    "jpeg": {"format": "JPEG", "quality": 85},  # 1.9 KB for the same image
}


def thumbnail_png(img: Image.Image, size: int, encoding: str = "png") -> bytes:
    """Image bytes (PNG unless `encoding` says jpeg) of `img`, longest side `size` pixels."""
    thumb = img.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, **THUMBNAIL_ENCODINGS[encoding])
    return buf.getvalue()


def downsized_png(img: Image.Image, max_side: int) -> bytes:
    """PNG bytes of `img`, its longest side cut to `max_side` (never enlarged); fast compression,
    since the cache is read back a few times and then deleted."""
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class ImageSource:
    """Where a shard's images come from: the original files, or the shard's decode cache (each
    image decoded, converted to 8 bits by one `Intensity` and downsized once, then read by
    every model that converts the same way)."""

    def __init__(
        self, cache_path: str | os.PathLike | None = None, intensity: Intensity | None = None
    ):
        self.intensity = intensity or DISPLAY
        self.table = None
        self.index: dict[str, int] = {}
        if cache_path:
            import pyarrow.parquet as pq

            # Arrow buffers, not Python objects: DataLoader workers share them copy-on-write.
            self.table = pq.read_table(cache_path)
            self.index = {k: i for i, k in enumerate(self.table.column("image_id").to_pylist())}

    def load(self, image_id: str, path: str) -> Image.Image:
        i = self.index.get(image_id) if self.table is not None else None
        if i is None:
            return load_gray8(path, self.intensity)
        error = self.table.column("error")[i].as_py()
        if error:
            raise ImageLoadError(error)
        with Image.open(io.BytesIO(self.table.column("image")[i].as_py())) as img:
            img.load()
            return img.convert("L")
