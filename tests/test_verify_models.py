"""`cxr-atlas verify-models`: golden vectors of fixed films per model, in float32 and the run's
dtype, and a later run compared with them (cosine >= 0.99). Here on tiny models of the seed
classes; the GPU test runs the later run on a GPU, in the dtype the loaders pick there."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cxratlas.cli import main
from cxratlas.testing import tiny_models

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def config(repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    seed = yaml.safe_load((repo / "config/models/seed.yaml").read_text())["models"]
    mii, davit_args = tiny_models.medimageinsight(root / "mii")
    models = {
        "rad_dino": {**seed["rad_dino"], "weights": str(tiny_models.rad_dino(root / "rad"))},
        "medimageinsight": {**seed["medimageinsight"], "weights": str(mii),
                            "model_args": davit_args,
                            "preprocess": {**seed["medimageinsight"]["preprocess"], "size": 96}},
        "cxr_foundation": {"kind": "precomputed", "source": str(root / "none.parquet")},
    }  # fmt: skip
    for entry in models.values():
        entry.pop("revision", None)
        entry.pop("sha256", None)  # a tiny stand-in, not the release's file
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def _run(config, out, *extra) -> int:
    return main(["verify-models", str(config), "--out", str(out), "--device", "cpu", *extra])


def test_golden_vectors_are_written_per_model(config, tmp_path):
    assert _run(config, tmp_path / "golden") == 0
    for name, dim in (("rad_dino", 32), ("medimageinsight", 8)):
        with np.load(tmp_path / "golden" / f"{name}.npz") as g:
            assert g["fp32"].shape == g["run"].shape == (4, dim)
            assert np.allclose(g["fp32"], g["run"])  # a CPU runs float32 either way
            assert list(g["ids"]) == [f"phantom_{i}" for i in range(4)]
    assert not (tmp_path / "golden" / "cxr_foundation.npz").exists()  # no loader to verify
    assert len(list((tmp_path / "golden" / "films").glob("*.png"))) == 4


def test_a_later_run_matches_and_a_changed_model_does_not(config, tmp_path, capsys):
    assert _run(config, tmp_path / "golden") == 0
    assert _run(config, tmp_path / "later", "--against", str(tmp_path / "golden")) == 0
    out = capsys.readouterr().out
    assert "model=rad_dino" in out and "fp32_vs_golden=1.00000" in out and "ok=True" in out
    # the same entry over other weights (a changed checkpoint): caught, named, exit 1
    models = yaml.safe_load(config.read_text())["models"]
    models["rad_dino"]["weights"] = str(tiny_models.rad_dino(tmp_path / "other"))
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({"models": models}))
    assert _run(changed, tmp_path / "again", "--against", str(tmp_path / "golden")) == 1
    assert "below cosine 0.99" in capsys.readouterr().err


def test_other_films_are_refused(config, tmp_path):
    assert _run(config, tmp_path / "golden") == 0
    films = tmp_path / "films"
    films.mkdir()
    from PIL import Image

    Image.fromarray(np.full((64, 64), 9, np.uint8)).save(films / "x.png")
    with pytest.raises(ValueError, match="made from other films"):
        _run(config, tmp_path / "b", "--images", str(films), "--against", str(tmp_path / "golden"))


@pytest.mark.gpu
def test_a_gpu_run_matches_golden_vectors_written_in_float32(config, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    assert _run(config, tmp_path / "golden") == 0  # float32 on the CPU
    rc = main(["verify-models", str(config), "--out", str(tmp_path / "gpu"), "--device", "cuda",
               "--against", str(tmp_path / "golden")])  # fmt: skip
    assert rc == 0
