"""JPEG archives (MIMIC-CXR-JPG, CheXpert) decoded in batches on the GPU, so extraction waits on
the GPU, not on CPU decoding. `torchvision.io.decode_jpeg(device="cuda")` runs nvJPEG on a list
of encoded files at once; a file it cannot decode (a PNG, a DICOM, a progressive or CMYK JPEG
nvJPEG refuses, a broken file) falls back to the PIL path, `imaging.load_gray8`, so the result is
always the same 8-bit grayscale image the CPU path gives, within JPEG decoders' rounding (IDCT
and colour conversion: a few grey levels at most, measured in tests/test_gpu_decode.py).

Extraction uses it through `reader.batch_decoded` (`extract.jpeg_decode`); `benchmarks/
gpu_check.py` times it against PIL per batch.
"""

from __future__ import annotations

import os

import numpy as np

from cxratlas.ingest.imaging import ImageLoadError, load_gray8

JPEG_MAGIC = b"\xff\xd8\xff"


def is_jpeg(path: str) -> bool:
    """Whether the file starts as a JPEG does (what it is, not what its name says)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(3) == JPEG_MAGIC
    except OSError:
        return False


def read_bytes(paths: list[str]) -> list[bytes | None]:
    """Each file's bytes (None where it cannot be read): the cheap part, for CPU workers."""
    out = []
    for p in paths:
        try:
            with open(p, "rb") as fh:
                out.append(fh.read())
        except OSError:
            out.append(None)
    return out


def decode_gray8(paths: list[str], device: str = "cuda") -> list[np.ndarray | ImageLoadError]:
    """8-bit grayscale arrays of `paths`, JPEGs decoded as one batch on `device` ("cpu" runs
    torchvision's libjpeg path), everything else and every failure through PIL."""
    return decode_bytes(read_bytes(paths), paths, device)


def decode_bytes(
    data: list[bytes | None], paths: list[str], device: str = "cuda"
) -> list[np.ndarray | ImageLoadError]:
    """`decode_gray8` on files already read (`data[i]` holds `paths[i]`'s bytes)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    jpeg = [i for i, d in enumerate(data) if d and batchable(d)]
    out: list = [None] * len(paths)
    if jpeg:
        tensors = [torch.frombuffer(bytearray(data[i]), dtype=torch.uint8) for i in jpeg]
        try:
            decoded = decode_jpeg(
                tensors, mode=ImageReadMode.GRAY, device=device, apply_exif_orientation=True
            )
        except RuntimeError:  # one bad file fails the batch: decode them one by one
            decoded = [_one(t, device) for t in tensors]
        for i, img in zip(jpeg, decoded, strict=True):
            if img is not None:
                out[i] = img[0].cpu().numpy()
    for i, p in enumerate(paths):
        if out[i] is None:
            try:
                out[i] = np.asarray(load_gray8(os.fspath(p)))
            except ImageLoadError as exc:
                out[i] = exc
    return out


def batchable(data: bytes) -> bool:
    """Whether a file's bytes can go to the batch decoder: a JPEG needing no EXIF rotation
    (torchvision's CUDA path ignores the tag, so a rotated one takes the PIL path)."""
    return data.startswith(JPEG_MAGIC) and _upright(data)


def _upright(data: bytes) -> bool:
    """Whether the JPEG needs no EXIF rotation (PIL reads only its header here)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.getexif().get(0x0112, 1) == 1
    except Exception:  # unreadable header: let the decoder (or PIL after it) say why
        return True


def _one(tensor, device: str):
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(
            tensor, mode=ImageReadMode.GRAY, device=device, apply_exif_orientation=True
        )
    except RuntimeError:
        return None
