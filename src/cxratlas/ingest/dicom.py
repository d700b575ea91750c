"""DICOM chest X-rays to 8-bit grayscale, the way a reading station shows them, and the header
tags a manifest wants.

Pixel path: stored values -> modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence)
-> a `Film` (with its VOI LUT Sequence or first Window Center/Width, and whether it is shown
inverted: MONOCHROME1 or Presentation LUT Shape INVERSE) -> each model's `Intensity` -> 0..255
(`cxratlas.ingest.intensity`). Files without the 128-byte preamble
or file meta (old CR exports) are read with `force=True` and implicit VR little endian assumed.
Compressed transfer syntaxes decode where pydicom has a codec: RLE natively, JPEG baseline
through Pillow, JPEG-LS / JPEG 2000 / lossless JPEG with `pip install cxratlas[dicom]`.
Patient names, ids and birth dates are never read into the manifest.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from cxratlas.ingest.intensity import DISPLAY, Film, Intensity, window  # noqa: F401

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
# header tag -> manifest column; nothing that identifies a patient
TAGS = {
    "ViewPosition": "view_position",
    "Manufacturer": "manufacturer",
    "PhotometricInterpretation": "photometric_interpretation",
    "PatientSex": "sex",
    "PatientAge": "age",
    "StudyDate": "study_date",
    "Modality": "modality",
}


class DicomError(ValueError):
    """A DICOM file that cannot be turned into an image; the message says why."""


def is_dicom(path: str | os.PathLike) -> bool:
    """By suffix, or by the 'DICM' magic after the preamble."""
    if str(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _read(path: str | os.PathLike, pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise DicomError(f"not a readable DICOM file ({exc})") from exc
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian  # no file meta: the DICOM default
    return ds


def dicom_film(path: str | os.PathLike) -> Film:
    """The first frame's stored values after the modality LUT, with the display window the
    file carries and its polarity; each model's `Intensity` turns it into 8 bits."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = _read(path, pixels=True)
    if "PixelData" not in ds:
        raise DicomError("no pixel data (a header-only or structured-report file?)")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # codec missing, truncated pixel data, bad header: all fatal here
        raise DicomError(
            f"cannot decode pixel data, transfer syntax "
            f"{getattr(ds.file_meta, 'TransferSyntaxUID', '?')} ({exc})"
        ) from exc
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    if int(ds.get("SamplesPerPixel", 1)) == 3:  # a colour secondary capture: its luminance
        grey = np.asarray(arr[..., :3] @ np.array([0.299, 0.587, 0.114]), np.float64)
        return Film(grey.clip(0, 255).round(), kind="8bit")
    values = apply_modality_lut(arr, ds).astype(np.float64)
    voi = None
    if "VOILUTSequence" in ds:
        lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        voi = apply_voi_lut(values, ds, index=0).astype(np.float64) / (2**lut_bits - 1)
    stored = None
    if "WindowCenter" in ds and "WindowWidth" in ds:
        stored = (_first(ds.WindowCenter), _first(ds.WindowWidth),
                  str(ds.get("VOILUTFunction", "LINEAR")))  # fmt: skip
    return Film(values, kind="dicom", window=stored, voi=voi, invert=_shown_inverted(ds),
                full_scale=float(2 ** int(ds.get("BitsStored", 16) or 16) - 1))  # fmt: skip


def _shown_inverted(ds) -> bool:
    """Low values white: MONOCHROME1, or a Presentation LUT Shape of INVERSE. One inversion
    either way: for DX images INVERSE is how MONOCHROME1 is displayed (PS3.3 C.8.11.6.1.2)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"


def dicom_to_gray8(path: str | os.PathLike, intensity: Intensity | None = None) -> np.ndarray:
    """An (H, W) uint8 array of the first frame, converted by `intensity` (default: the
    display window, else a 0.5-99.5 percentile range)."""
    return (intensity or DISPLAY).to_gray8(dicom_film(path))


def _first(value) -> float:
    """Window Center/Width may hold several windows (VM > 1): the first is the default."""
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, MultiValue | list | tuple) else value)


def _age(value: str) -> float | None:
    """DICOM Age String ('062Y', '018M', '062') in years."""
    m = re.fullmatch(r"\s*(\d+)\s*([DWMY]?)\s*", str(value or ""))
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2) or "Y"
    return round(n / {"D": 365.25, "W": 52.18, "M": 12, "Y": 1}[unit], 1)


def dicom_tags(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest-worthy header tags of one file (header only, pixels not read)."""
    ds = _read(path, pixels=False)
    out: dict[str, Any] = {}
    for tag, column in TAGS.items():
        value = ds.get(tag)
        if value in (None, ""):
            continue
        out[column] = _age(value) if tag == "PatientAge" else str(value).strip()
    return out
