"""Decode any supported image file into the one form every model starts from: 8-bit grayscale."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps

from cxratlas.ingest.dicom import DicomError, dicom_to_gray8, is_dicom

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


def to_gray8(img: Image.Image) -> Image.Image:
    """Convert a decoded PIL image to 8-bit grayscale ('L').

    16-bit images are min-max scaled (HF processors would divide them by 255 and saturate);
    transparency is composited on black; palette images are expanded first.
    """
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("L")


def load_gray8(path: str | os.PathLike) -> Image.Image:
    """Open `path` and return an 8-bit grayscale image, or raise ImageLoadError naming the file."""
    path = os.fspath(path)
    try:
        if os.path.getsize(path) == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes)")
        if is_dicom(path):
            return Image.fromarray(dicom_to_gray8(path), mode="L")
        with Image.open(path) as img:
            img.load()
            return to_gray8(img)
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{path}: file not found") from exc
    except DicomError as exc:
        raise ImageLoadError(f"{path}: DICOM: {exc}") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{path}: cannot decode image ({exc})") from exc


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
    image decoded, windowed to 8 bits and downsized once, then read by every model)."""

    def __init__(self, cache_path: str | os.PathLike | None = None):
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
            return load_gray8(path)
        error = self.table.column("error")[i].as_py()
        if error:
            raise ImageLoadError(error)
        with Image.open(io.BytesIO(self.table.column("image")[i].as_py())) as img:
            img.load()
            return img.convert("L")
