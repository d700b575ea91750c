"""Pixels as each model's authors prepare them: one film (DICOM with and without a window,
MONOCHROME1, Presentation LUT Shape INVERSE, a 16-bit PNG, an 8-bit JPEG) reaches each seed
model as its authors' own code would turn it into 8 bits. The references below restate the
authors' code (Google-Health/medsiglip, microsoft/healthcareai-examples; commits in
config/models/seed.yaml) in NumPy, independently of `cxratlas.ingest.intensity`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cxratlas.embed.models import ModelConfigError, intensity_of
from cxratlas.ingest.imaging import load_film, load_gray8
from cxratlas.ingest.intensity import DISPLAY, Intensity


@pytest.fixture(scope="module")
def seed(repo):
    return yaml.safe_load((repo / "config/models/seed.yaml").read_text())["models"]


SEED = Path(__file__).resolve().parent.parent / "config/models/seed.yaml"
SEED_NAMES = yaml.safe_load(SEED.read_text())["models"]
GOOGLE = tuple(n for n in ("medgemma", "medsiglip") if n in SEED_NAMES)
MICROSOFT = ("medimageinsight",)


def _film(rows=60, cols=48, seed=0) -> np.ndarray:
    """A 12-bit portrait film: a smooth body with a dark background border and a few hot
    pixels (so a percentile range and a min-max range differ)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:rows, :cols]
    body = 800 + 2400 * np.exp(-(((y - rows / 2) / rows) ** 2 + ((x - cols / 2) / cols) ** 2) * 3)
    film = body + rng.normal(0, 40, (rows, cols))
    film[:, :3] = 60
    film[5, 5], film[7, 9] = 4095, 4000
    return film.clip(0, 4095).astype(np.uint16)


def _dicom(path, pixels, **tags):
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "DX", *pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def google_reference(pixels, center=None, width=None, monochrome1=False) -> np.ndarray:
    """Google's HAI-DEF CXR handler (generic_dicom_handler._norm_cxr_imaging, then the
    predictor's division by the type's maximum), as 8 bits."""
    img = pixels.astype(np.float64)
    if center is not None:
        half = width // 2
        top, bottom = center + half, center - half
        img = np.round(np.interp(img.clip(bottom, top), (bottom, top), (0, 65535)))
    img = img.astype(np.uint16)
    img = np.interp(img, (img.min(), img.max()), (0, 65535)).astype(np.uint16)  # rescale
    if monochrome1:
        img = 65535 - img
    return np.round(img / 65535 * 255).astype(np.uint8)


def microsoft_reference(values, percentiles=(0.01, 0.99)) -> np.ndarray:
    """healthcareai_toolkit.data.io.normalize_image_to_uint8(percentiles=(0.01, 0.99)), the
    MedImageInsight client's default for any image that is not already uint8."""
    lo = np.percentile(values, percentiles[0] * 100)
    hi = np.percentile(values, percentiles[1] * 100)
    out = (np.clip(values, lo, hi) - lo) / (hi - lo) * 255.0
    return out.astype(np.uint8)


def _gray(name, seed, path) -> np.ndarray:
    return np.asarray(load_gray8(path, intensity_of(name, seed[name])))


def _close(a, b, levels=1):
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= levels, diff.max()


def test_a_windowed_dicom_reaches_each_model_as_its_authors_prepare_it(seed, tmp_path):
    pixels = _film()
    path = _dicom(tmp_path / "w.dcm", pixels, WindowCenter=1800, WindowWidth=2400)
    for name in GOOGLE:  # window, then stretched to the full range
        _close(_gray(name, seed, path), google_reference(pixels, 1800, 2400))
    for name in MICROSOFT:  # no window: 1st-99th percentile of the stored values
        _close(_gray(name, seed, path), microsoft_reference(pixels.astype(np.float32)))
    from cxratlas.ingest.dicom import window

    display = np.round(window(pixels.astype(float), 1800, 2400).clip(0, 1) * 255)
    for name in set(seed) - set(GOOGLE) - set(MICROSOFT):  # no published conversion
        assert np.array_equal(_gray(name, seed, path), display.astype(np.uint8)), name


def test_a_dicom_without_a_window(seed, tmp_path):
    pixels = _film(seed=1)
    path = _dicom(tmp_path / "n.dcm", pixels)
    for name in GOOGLE:  # full-range min-max
        _close(_gray(name, seed, path), google_reference(pixels))
    for name in MICROSOFT:
        _close(_gray(name, seed, path), microsoft_reference(pixels.astype(np.float32)))
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    want = np.round(((pixels - lo) / (hi - lo)).clip(0, 1) * 255).astype(np.uint8)
    assert np.array_equal(_gray("rad_dino", seed, path), want)
    # the two hot pixels are why a range choice matters: min-max leaves the body darker
    assert _gray("medgemma", seed, path).mean() < _gray("rad_dino", seed, path).mean() - 10


@pytest.mark.parametrize(
    "tags",
    [
        {"PhotometricInterpretation": "MONOCHROME1"},
        {"PresentationLUTShape": "INVERSE"},
        {"PhotometricInterpretation": "MONOCHROME1", "PresentationLUTShape": "INVERSE"},
    ],
    ids=["monochrome1", "inverse", "both"],
)
def test_films_shown_inverted_reach_every_model_bone_bright(seed, tmp_path, tags):
    pixels = _film(seed=2)
    plain = _dicom(tmp_path / "p.dcm", pixels, WindowCenter=1800, WindowWidth=2400)
    inverted = _dicom(tmp_path / "i.dcm", pixels, WindowCenter=1800, WindowWidth=2400, **tags)
    for name in seed:
        a, b = _gray(name, seed, plain), _gray(name, seed, inverted)
        assert np.array_equal(b, 255 - a), name  # one inversion, never two
    if tags.get("PhotometricInterpretation") == "MONOCHROME1":  # Google's handler agrees
        _close(_gray("medgemma", seed, inverted), google_reference(pixels, 1800, 2400, True))


def test_a_sixteen_bit_png(seed, tmp_path):
    pixels = _film(seed=3) * 16  # 12 bits stored in 16
    path = tmp_path / "f16.png"
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode.startswith("I")
    for name in GOOGLE:  # the stored value over the type's maximum: a dark film, as theirs
        want = np.round(pixels / 65535 * 255).astype(np.uint8)
        assert np.array_equal(_gray(name, seed, path), want)
    for name in MICROSOFT:
        _close(_gray(name, seed, path), microsoft_reference(pixels.astype(np.float64)))
    lo, hi = pixels.min(), pixels.max()
    want = np.round((pixels - lo) / (hi - lo) * 255).astype(np.uint8)
    assert np.array_equal(_gray("biomedclip", seed, path), want)


def test_an_eight_bit_jpeg_reaches_every_model_unchanged(seed, tmp_path):
    path = tmp_path / "f.jpg"
    Image.fromarray((_film(seed=4) // 16).astype(np.uint8)).save(path, quality=90)
    decoded = np.asarray(Image.open(path).convert("L"))
    for name in seed:
        assert np.array_equal(_gray(name, seed, path), decoded), name


def test_every_seed_entry_names_the_source_of_its_intensity(seed):
    for name, entry in seed.items():
        assert entry.get("intensity", {}).get("source"), name
    assert load_film  # the Film is what the decode cache and each job convert


def test_intensity_blocks_are_checked_and_keyed():
    with pytest.raises(ModelConfigError, match=r"model 'm': intensity.dicom must be one of"):
        intensity_of("m", {"intensity": {"dicom": "windowed"}})
    with pytest.raises(ModelConfigError, match=r"unknown intensity key\(s\) \['pecentiles'\]"):
        intensity_of("m", {"intensity": {"pecentiles": [1, 99]}})
    with pytest.raises(ModelConfigError, match="within 0..100"):
        intensity_of("m", {"intensity": {"percentiles": [99, 1]}})
    assert intensity_of("m", {}) == DISPLAY
    a = Intensity.from_entry("a", {"dicom": "percentile", "percentiles": [1, 99], "source": "x"})
    b = Intensity.from_entry("b", {"dicom": "percentile", "percentiles": [1, 99], "source": "y"})
    assert a.key == b.key != DISPLAY.key and a.key.startswith("percentile-")


def test_grey_reaches_every_processor_as_three_equal_channels(tmp_path):
    """MedGemma's processor leaves `do_convert_rgb` unset; the loader converts explicitly."""
    from cxratlas.embed.models import load_embedder
    from cxratlas.testing import tiny_models

    folder = tiny_models.medgemma(tmp_path / "mg")
    cfg = (folder / "preprocessor_config.json").read_text()
    assert '"do_convert_rgb": null' in cfg
    m = load_embedder("mg", {"kind": "hf_vision_tower", "weights": str(folder)}, device="cpu")
    grey = Image.fromarray(np.tile(np.arange(0, 250, 5, dtype=np.uint8), (40, 1)))
    with pytest.raises(ValueError, match="mean must have 1 elements"):
        m.processor(images=grey, return_tensors="np")  # the processor alone fails on grey
    x = m.preprocess(grey)
    assert x.shape[0] == 3 and np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])
