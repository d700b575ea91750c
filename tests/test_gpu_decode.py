"""Batch JPEG decoding (nvJPEG on a GPU; torchvision's libjpeg path here) gives the PIL path's
8-bit grayscale image within a stated tolerance, and falls back to PIL for what it cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxratlas.embed.gpu_decode import _upright, decode_gray8
from cxratlas.ingest.imaging import ImageLoadError, load_gray8

# JPEG decoders may round the IDCT and colour conversion differently: at most this many grey
# levels apart on any pixel, and under half a level on average
MAX_LEVELS, MEAN_LEVELS = 8, 0.5


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:260]
    gray = (127 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)).astype(np.uint8)
    paths = {}
    Image.fromarray(gray, "L").save(tmp_path / "gray.jpg", quality=92)
    rgb = np.stack([gray, np.roll(gray, 5, 1), 255 - gray], -1)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.jpg", quality=90)  # colour JPEG
    Image.fromarray(rng.integers(0, 255, (64, 64), np.uint8), "L").save(tmp_path / "noise.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    for name in ("gray.jpg", "rgb.jpg", "noise.png", "broken.jpg"):
        paths[name] = str(tmp_path / name)
    return paths


def test_batch_decode_matches_the_pil_path(files):
    names = ["gray.jpg", "rgb.jpg", "noise.png", "broken.jpg"]
    out = decode_gray8([files[n] for n in names], device="cpu")
    for name, arr in zip(names[:3], out[:3], strict=True):
        ref = np.asarray(load_gray8(files[name]))
        assert arr.dtype == np.uint8 and arr.shape == ref.shape, name
        diff = np.abs(arr.astype(int) - ref.astype(int))
        assert diff.max() <= MAX_LEVELS and diff.mean() < MEAN_LEVELS, (name, diff.max())
    assert np.array_equal(out[2], np.asarray(load_gray8(files["noise.png"])))  # PIL fallback
    assert isinstance(out[3], ImageLoadError) and "broken.jpg" in str(out[3])


def files_gray(folder: Path) -> str:
    Image.fromarray(np.full((40, 30), 90, np.uint8), "L").save(folder / "up.jpg")
    return str(folder / "up.jpg")


def test_exif_orientation_is_applied_as_the_pil_path_does(tmp_path):
    gray = np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (120, 1))  # 120 x 200, landscape
    img = Image.fromarray(gray, "L")
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view": a portrait film stored sideways
    img.save(tmp_path / "rot.jpg", quality=95, exif=exif)
    (out,) = decode_gray8([str(tmp_path / "rot.jpg")], device="cpu")
    ref = np.asarray(load_gray8(tmp_path / "rot.jpg"))
    assert ref.shape == (200, 120) and out.shape == ref.shape
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= MAX_LEVELS
    # nvJPEG's batch path ignores the tag, so such a file never reaches it
    assert not _upright((tmp_path / "rot.jpg").read_bytes())
    assert _upright(Path(files_gray(tmp_path)).read_bytes())


def test_extraction_decodes_jpegs_per_batch_as_the_workers_would(files, tmp_path, monkeypatch):
    """`extract.jpeg_decode: batch` (nvJPEG on a GPU; libjpeg here) embeds what the PIL path
    embeds, in the same order, and skips the same broken file with a reason."""
    import pandas as pd

    from cxratlas.embed import reader
    from cxratlas.embed.extract import ExtractSettings, ShardFiles, extract_shard
    from cxratlas.embed.reader import batch_decode_on
    from cxratlas.io import read_embeddings

    batches = []  # what reached the batch decoder: JPEG files only, several at once

    def decode_bytes(data, paths, device):
        batches.append([p.rsplit("/", 1)[1] for p in paths])
        return real(data, paths, device)

    real = reader.decode_bytes
    monkeypatch.setattr(reader, "decode_bytes", decode_bytes)

    names = ["gray.jpg", "noise.png", "broken.jpg", "rgb.jpg"]
    Image.open(files["gray.jpg"]).rotate(90, expand=True).save(tmp_path / "b.jpg", quality=88)
    names.append("b.jpg")
    files["b.jpg"] = str(tmp_path / "b.jpg")
    sample = pd.DataFrame({"image_id": [n.split(".")[0] for n in names],
                           "path": [files[n] for n in names], "shard": 0})  # fmt: skip
    entry = {"kind": "pixels", "image_size": 64, "batch_size": 3}  # batches cross the files
    out = {}
    for mode in ("pil", "batch"):
        shard = ShardFiles(str(tmp_path / f"{mode}.parquet"), str(tmp_path / f"{mode}.json"))
        settings = ExtractSettings(device="cpu", jpeg_decode=mode, num_workers=0)
        rep = extract_shard(sample, 0, "px", entry, shard, settings)
        out[mode] = read_embeddings(shard.shard)[:2], rep.skipped
    (ids_pil, X_pil), skipped_pil = out["pil"]
    (ids_batch, X_batch), skipped_batch = out["batch"]
    assert ids_pil == ids_batch == ["gray", "noise", "rgb", "b"]
    assert [s["image_id"] for s in skipped_batch] == [s["image_id"] for s in skipped_pil]
    assert "broken.jpg" in skipped_batch[0]["reason"]
    assert batches == [["gray.jpg", "broken.jpg"], ["rgb.jpg", "b.jpg"]]  # batches of 3 rows
    # torchvision's CPU path is libjpeg-turbo, as Pillow's: the same pixels, so the same vectors
    # (nvJPEG may differ by the few grey levels test_batch_decode_matches_the_pil_path allows)
    assert np.allclose(X_pil, X_batch, atol=1e-6)
    assert batch_decode_on("auto", "cuda", None) and not batch_decode_on("auto", "cpu", None)
    assert not batch_decode_on("auto", "cuda", "decoded.parquet")  # the cache is already decoded
    with pytest.raises(ValueError, match="extract.jpeg_decode"):
        batch_decode_on("nvjpeg", "cuda", None)
