import numpy as np
import pytest
from PIL import Image

from cxratlas.embed.models import KINDS, ModelConfigError, load_embedder, needs_fit
from cxratlas.embed.models.pixels import PixelEmbedder


def _images(n=30, size=40, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)) for _ in range(n)]


def test_registry_and_unknown_kind():
    assert {"pixels", "hf_automodel"} <= set(KINDS)
    with pytest.raises(ModelConfigError, match=r"model 'm': unknown kind 'clipz'.*known kinds"):
        load_embedder("m", {"kind": "clipz"})


def test_pixels_standardised_vector():
    m = load_embedder("px", {"kind": "pixels", "image_size": 8})
    v = m.embed(m.preprocess(_images(1)[0])[None])
    assert v.shape == (1, 64) and m.dim == 64 and v.dtype == np.float32
    assert abs(v.mean()) < 1e-5 and abs(v.std() - 1) < 1e-4
    flat = m.preprocess(Image.new("L", (20, 20), 128))  # constant image: no division by zero
    assert np.isfinite(flat).all() and np.allclose(flat, 0)


def test_pixels_pca_fit_then_project(tmp_path):
    entry = {"kind": "pixels", "image_size": 8, "pca": 5}
    assert needs_fit("p", entry) and not needs_fit("p", {"kind": "pixels"})
    with pytest.raises(ModelConfigError, match="no fitted state"):
        load_embedder("p", entry)
    imgs = _images()
    PixelEmbedder.fit("p", entry, imgs, seed=0, out_path=tmp_path / "s.npz")
    m = load_embedder("p", entry, state_path=str(tmp_path / "s.npz"))
    X = m.embed(np.stack([m.preprocess(i) for i in imgs]))
    assert X.shape == (30, 5) and m.dim == 5
    # PCA scores are centred and uncorrelated on the fit set
    assert np.allclose(X.mean(0), 0, atol=1e-4)
    cov = np.cov(X.T)
    assert np.allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-3)
    # more components than fit images: the fit takes what the sample allows (tests/test_plan.py)
    PixelEmbedder.fit("p", {**entry, "pca": 50}, imgs, 0, tmp_path / "t.npz")
    assert np.load(tmp_path / "t.npz")["components"].shape[0] == min(len(imgs), 50)


def test_hf_automodel_pooling_and_dims(tiny_dinov2):
    import torch
    from transformers import AutoModel

    entry = {
        "kind": "hf_automodel",
        "weights": str(tiny_dinov2),
        "pooling": "pooler",
        "batch_size": 4,
    }
    m = load_embedder("rad_dino_tiny", entry, device="cpu")
    x = np.stack([m.preprocess(img) for img in _images(3, size=70)])
    assert x.shape == (3, 3, 56, 56)  # L expanded to RGB, shortest-edge resize + centre crop
    emb = m.embed(x)
    assert emb.shape == (3, 32) and emb.dtype == np.float32 and m.dim == 32
    ref = AutoModel.from_pretrained(tiny_dinov2).eval()
    with torch.no_grad():
        out = ref(pixel_values=torch.as_tensor(x))
    assert np.allclose(emb, out.pooler_output.numpy(), atol=1e-5)
    cls = load_embedder("c", {**entry, "pooling": "cls"}, device="cpu").embed(x)
    mean = load_embedder("c", {**entry, "pooling": "mean"}, device="cpu").embed(x)
    assert np.allclose(cls, out.last_hidden_state[:, 0].numpy(), atol=1e-5)
    assert np.allclose(mean, out.last_hidden_state.mean(1).numpy(), atol=1e-5)


def test_hf_preprocessing_matches_the_model_card(tiny_dinov2):
    m = load_embedder("r", {"kind": "hf_automodel", "weights": str(tiny_dinov2)}, device="cpu")
    grey = m.preprocess(Image.new("L", (56, 56), 128))
    # RAD-DINO card: rescale 1/255, mean 0.5307, std 0.2583 on every channel
    assert np.allclose(grey, (128 / 255 - 0.5307) / 0.2583, atol=1e-5)


def test_trust_remote_code_needs_a_pinned_revision(tiny_dinov2):
    entry = {"kind": "hf_automodel", "weights": str(tiny_dinov2), "trust_remote_code": True}
    with pytest.raises(ModelConfigError, match="trust_remote_code needs a pinned 'revision'"):
        load_embedder("x", entry, device="cpu")
