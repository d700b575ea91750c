from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CXR_REAL = REPO.parent / "shared" / "cxr-real"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """120 phantoms with their manifest (planted truth included)."""
    from cxratlas.demo.phantom import generate_demo

    out = tmp_path_factory.mktemp("demo")
    df = generate_demo(out, n_images=120, seed=3, outlier_fraction=0.1, progress=False)
    return out, df


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory) -> Path:
    """A random-weight Dinov2Model + BitImageProcessor saved like microsoft/rad-dino."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    out = tmp_path_factory.mktemp("tiny-rad-dino")
    cfg = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=4,
        patch_size=14,
        image_size=56,
        layerscale_value=1.0,
    )
    Dinov2Model(cfg).eval().save_pretrained(out)
    BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": 56},
        resample=3,
        do_center_crop=True,
        crop_size={"height": 56, "width": 56},
        image_mean=[0.5307] * 3,
        image_std=[0.2583] * 3,
        do_convert_rgb=True,
    ).save_pretrained(out)
    return out
