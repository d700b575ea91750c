"""DICOM: modality LUT -> VOI window -> MONOCHROME1 inversion -> 8 bits, on files pydicom writes
in the forms real archives hold (no preamble, RLE and JPEG compressed, corrupt)."""

import io

import numpy as np
import pytest
from PIL import Image

from cxratlas.ingest.dicom import dicom_tags, dicom_to_gray8, window
from cxratlas.ingest.imaging import ImageLoadError, load_gray8


def _dataset(pixels: np.ndarray, **tags):
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    CRImageStorage = "1.2.840.10008.5.1.4.1.1.1"

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "CR", "Doe^Jane", "MRN-0042"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def _ramp(dtype=np.uint16, hi=4095):
    return np.tile(np.linspace(0, hi, 64).astype(dtype), (48, 1))


def test_window_matches_the_standard_by_hand():
    x = np.array([0.0, 1499.5, 1500.0, 2000.0, 2500.5, 4000.0])
    y = window(x, center=2000, width=1001).clip(0, 1)
    # LINEAR: (x - (c - 0.5)) / (w - 1) + 0.5, clipped
    assert y.tolist() == pytest.approx([0, 0, 0.0005, 0.5005, 1, 1])
    assert window(np.array([2000.0]), 2000, 100, "SIGMOID")[0] == 0.5


def test_rescale_then_window_then_8_bits(tmp_path):
    ds = _dataset(_ramp(), RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=3000,
                  WindowWidth=4000, ViewPosition="PA", Manufacturer="FUJI PHOTO FILM CO. LTD.",
                  PatientAge="062Y", PatientSex="F", StudyDate="20190102")  # fmt: skip
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    out = dicom_to_gray8(tmp_path / "a.dcm")
    hu = _ramp().astype(float) * 2 - 1000
    expected = np.round(window(hu, 3000, 4000).clip(0, 1) * 255).astype(np.uint8)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    tags = dicom_tags(tmp_path / "a.dcm")
    assert tags == {"view_position": "PA", "manufacturer": "FUJI PHOTO FILM CO. LTD.",
                    "photometric_interpretation": "MONOCHROME2", "sex": "F", "age": 62.0,
                    "study_date": "20190102", "modality": "CR"}  # fmt: skip


def test_monochrome1_is_inverted_and_no_window_uses_the_range(tmp_path):
    pixels = _ramp()
    _dataset(pixels).save_as(tmp_path / "m2.dcm", enforce_file_format=True)
    _dataset(pixels, PhotometricInterpretation="MONOCHROME1").save_as(
        tmp_path / "m1.dcm", enforce_file_format=True
    )
    m2, m1 = dicom_to_gray8(tmp_path / "m2.dcm"), dicom_to_gray8(tmp_path / "m1.dcm")
    assert m2[0, 0] == 0 and m2[0, -1] == 255 and np.array_equal(m1, 255 - m2)


def test_file_without_preamble_or_meta_reads(tmp_path):
    """Old CR exports (like fo-dicom's CR-MONO1-10-chest.dcm) start straight with the dataset."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = _dataset(_ramp(), WindowCenter=2048, WindowWidth=4096)
    del ds.file_meta
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    raw = buf.getvalue()
    assert raw[128:132] != b"DICM"
    (tmp_path / "raw.dcm").write_bytes(raw)
    img = load_gray8(tmp_path / "raw.dcm")
    assert img.size == (64, 48) and np.asarray(img)[0, -1] == 255


def test_rle_and_jpeg_compressed_pixel_data(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, RLELossless

    ds = _dataset(_ramp())
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    plain = _dataset(_ramp())
    plain.save_as(tmp_path / "plain.dcm", enforce_file_format=True)
    assert np.array_equal(
        dicom_to_gray8(tmp_path / "rle.dcm"), dicom_to_gray8(tmp_path / "plain.dcm")
    )

    pixels = _ramp(np.uint8, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    jp = _dataset(pixels)
    jp.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    jp.PixelData = encapsulate([buf.getvalue()])
    jp["PixelData"].is_undefined_length = True
    jp.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    out = dicom_to_gray8(tmp_path / "jpeg.dcm")
    assert np.abs(out.astype(int) - np.round(pixels / 255.0 * 255)).max() <= 6  # lossy


def test_corrupt_dicom_is_an_error_naming_the_file(tmp_path):
    _dataset(_ramp()).save_as(tmp_path / "ok.dcm", enforce_file_format=True)
    data = (tmp_path / "ok.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])  # truncated pixel data
    (tmp_path / "junk.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    for name in ("cut.dcm", "junk.dcm"):
        with pytest.raises(ImageLoadError, match=rf"{name}: DICOM: "):
            load_gray8(tmp_path / name)


def test_ingest_fills_empty_cells_from_headers_and_never_reads_names(tmp_path):
    import pandas as pd

    from cxratlas.ingest.manifest import ingest_manifest

    a = _dataset(_ramp(), ViewPosition="AP", Manufacturer="Agfa", PatientAge="071Y",
                 StudyDate="20170304")  # fmt: skip
    a.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    _dataset(_ramp(), ViewPosition="LL").save_as(tmp_path / "b.dcm", enforce_file_format=True)
    pd.DataFrame({"image_id": ["a", "b"], "path": ["a.dcm", "b.dcm"],
                  "view_position": ["", "PA"]}).to_csv(tmp_path / "m.csv", index=False)  # fmt: skip
    m, _ = ingest_manifest(tmp_path / "m.csv", image_root=tmp_path, dicom_tags=True)
    assert m["view_position"].tolist() == ["AP", "PA"]  # the manifest's own value wins
    assert m["manufacturer"].tolist()[0] == "Agfa" and m["age"].tolist()[0] == 71
    assert m["study_year"].tolist()[0] == 2017 and m["modality"].tolist() == ["CR", "CR"]
    text = m.astype(str).to_csv()
    assert "Doe" not in text and "MRN-0042" not in text
