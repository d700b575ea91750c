"""Every kind of bad input a real archive holds: each is read, or skipped and recorded with a
reason naming the file, and the run finishes with the rest (end to end through Snakemake)."""

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from cxratlas.ingest.imaging import ImageLoadError, load_gray8


def _png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _phantom(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:64, :64]
    return (
        (128 + 100 * np.sin(x / (5 + seed % 7)) * np.cos(y / 9) + rng.normal(0, 5, (64, 64)))
        .clip(0, 255)
        .astype(np.uint8)
    )


def _bad_files(folder) -> dict[str, tuple[str, str | None]]:
    """name -> (file, expected reason class or None if it must be read)."""
    g = _phantom(1)
    files = {
        "rgba.png": Image.fromarray(np.dstack([g, g, g, np.full_like(g, 200)]), "RGBA"),
        "palette.png": Image.fromarray(g).convert("P"),
        "sixteen.png": Image.fromarray(g.astype(np.uint16) * 257),
        "jpeg.jpg": Image.fromarray(g),
    }
    out = {}
    for name, img in files.items():
        (folder / name).write_bytes(_png_bytes(img, "JPEG" if name.endswith("jpg") else "PNG"))
        out[name] = (name, None)
    full_png, full_jpg = _png_bytes(Image.fromarray(g)), _png_bytes(Image.fromarray(g), "JPEG")
    (folder / "zero.png").write_bytes(b"")
    (folder / "cut.png").write_bytes(full_png[: len(full_png) // 2])
    (folder / "cut.jpg").write_bytes(full_jpg[: len(full_jpg) // 3])
    (folder / "notes.png").write_text("Findings: none. This is a text file with a .png name.\n")
    (folder / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 30)
    expected = {"zero.png": "empty file", "cut.png": "truncated file", "cut.jpg": "truncated file",
                "notes.png": "undecodable image", "broken.dcm": "bad DICOM"}  # fmt: skip
    out |= {name: (name, reason) for name, reason in expected.items()}
    return out


def test_each_bad_file_is_read_or_named(tmp_path):
    for name, (_, expected) in _bad_files(tmp_path).items():
        if expected is None:
            img = load_gray8(tmp_path / name)
            assert img.mode == "L" and img.size == (64, 64), name
        else:
            with pytest.raises(ImageLoadError, match=name.replace(".", r"\.")):
                load_gray8(tmp_path / name)
    # 16-bit: min-max to 8 bits, not saturated by a /255
    assert np.asarray(load_gray8(tmp_path / "sixteen.png")).max() == 255
    assert np.asarray(load_gray8(tmp_path / "sixteen.png")).min() < 50


def test_a_very_large_image_is_refused_not_loaded(tmp_path, monkeypatch):
    """Decompression bombs (far past any real CXR) are named and skipped, never decoded."""
    from PIL import Image as PILImage

    Image.new("L", (400, 400)).save(tmp_path / "huge.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 60_000)  # 400*400 > 2 * the limit
    with pytest.raises(ImageLoadError, match=r"huge\.png: cannot decode image .*decompression"):
        load_gray8(tmp_path / "huge.png")


@pytest.mark.workflow
def test_a_run_over_every_bad_input_finishes_and_accounts_for_each(repo, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cases = _bad_files(images)
    for i in range(60):  # enough good images for the maps
        Image.fromarray(_phantom(i + 10)).save(images / f"good{i}.png")
    ids = {f"good{i}": f"good{i}.png" for i in range(60)}
    ids |= {"unicode-Łódź-肺": "jpeg.jpg", "site/a/rgba": "rgba.png"}  # odd ids, real files
    ids |= {
        n.replace(".", "_"): f for n, (f, _) in cases.items() if n not in ("jpeg.jpg", "rgba.png")
    }
    ids["gone"] = "gone.png"  # never written
    pd.DataFrame({"image_id": list(ids), "path": list(ids.values()),
                  "Pneumonia": ["1", "0"] * (len(ids) // 2) + ["1"] * (len(ids) % 2)}).to_csv(
        tmp_path / "m.csv", index=False)  # fmt: skip
    cfg = {
        "dataset": {"preset": "generic", "manifest": str(tmp_path / "m.csv"),
                    "image_root": str(images)},
        "sample": {"n": None, "stratify_by": []},
        "extract": {"shard_size": 40},
        "analysis": {"label_noise": {"finding": None}},
    }  # fmt: skip
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(tmp_path),
         "--cores", "2", "--configfile", str(tmp_path / "test.yaml")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    atlas = pd.read_parquet(tmp_path / "results/atlas/atlas.parquet")
    read = {"unicode-Łódź-肺", "site/a/rgba", "palette_png", "sixteen_png"}
    assert read <= set(atlas["image_id"]) and len(atlas) == 60 + 4
    skipped = pd.read_parquet(tmp_path / "results/analysis/quality/skipped.parquet")
    got = skipped.groupby("image_id")["reason_class"].agg(set).to_dict()
    assert got.pop("gone") == {"missing file"}
    for name, (_, expected) in cases.items():
        if expected is not None:
            assert got[name.replace(".", "_")] == {expected}, (name, got)
    embed = skipped[skipped["stage"] == "embed"]
    assert embed.groupby("model").size().to_dict() == {"pixels_32": 5, "pixels_64_pca": 5}
    summary = pd.read_csv(tmp_path / "results/analysis/quality/summary.tsv", sep="\t")
    assert summary.set_index("model").loc["pixels_32", "skipped"] == 5
    assert summary["stage"].tolist()[0] == "ingest" and summary["skipped"].tolist()[0] == 1


@pytest.mark.workflow
def test_a_manifest_of_only_ids_and_paths_runs_with_the_default_config(repo, tmp_path):
    """No view, patient, vendor, sex, age, date or label column: every default that names one
    gives way, and the whole workflow runs. Then the user writes `stratify_by: [view_position]`:
    a real run stops before any job and every file under results/ stays as it was."""
    import hashlib

    from workflow_runs import minimal_config, snakemake, write_minimal_archive

    manifest = write_minimal_archive(tmp_path, n_images=40)
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(minimal_config(manifest)))
    proc = snakemake(repo, tmp_path)
    atlas = pd.read_parquet(tmp_path / "results/atlas/atlas.parquet")
    assert len(atlas) == 40 and {"x_pixels_32", "cluster_pixels_64_pca"} <= set(atlas.columns)
    assert not {"view_position", "sex", "patient_id_hash", "age"} & set(atlas.columns)
    log = (tmp_path / "logs/atlas.log").read_text()
    assert "is not in the manifest" not in log  # the defaults were left out, not tried
    assert "sample.stratify_by ['view_position']" in proc.stdout + proc.stderr

    def digest():
        files = sorted(p for p in (tmp_path / "results").rglob("*") if p.is_file())
        return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
                for p in files}  # fmt: skip

    before = digest()
    written = minimal_config(manifest, sample={"n": None, "stratify_by": ["view_position"]})
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(written))
    proc = snakemake(repo, tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Building DAG of jobs" not in out
    assert "sample.stratify_by (in " in out and "column(s) ['view_position'] are not" in out
    assert digest() == before
