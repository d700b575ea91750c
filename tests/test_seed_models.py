"""The seed models: each entry of config/models/seed.yaml, pointed at a tiny random-weight
model of the same class saved in the release's file layout, runs through the real loader and
matches a direct call of that class; preprocessing matches the model cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cxratlas.embed.models import ModelConfigError, load_embedder
from cxratlas.ingest.imaging import load_gray8
from cxratlas.testing import tiny_models

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def seed(repo):
    return yaml.safe_load((repo / "config/models/seed.yaml").read_text())["models"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """name -> (folder, overrides) for each seed model."""
    root = tmp_path_factory.mktemp("tiny-seed")
    mii, davit_args = tiny_models.medimageinsight(root / "mii")
    chexagent, xray = tiny_models.chexagent_2(root / "chexagent")
    return {
        "rad_dino": (tiny_models.rad_dino(root / "rad"), {}),
        "medgemma": (tiny_models.medgemma(root / "medgemma"), {}),
        "medsiglip": (tiny_models.chexagent_siglip(root / "medsiglip"), {}),  # a SiglipModel
        "chexagent": (
            chexagent,
            {"config_from": {"weights": str(xray)}},  # the seed's processor_overrides
        ),
        "medimageinsight": (mii, {"model_args": davit_args, "sha256": None}),
        "biomedclip": (tiny_models.biomedclip(root / "biomedclip"), {}),
    }


def _load(seed, tiny, name, **extra):
    folder, overrides = tiny[name]
    entry = {**seed[name], "weights": str(folder), **overrides, **extra}
    return load_embedder(name, {k: v for k, v in entry.items() if v is not None}, device="cpu")


def _cxr(w=70, h=90, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8))


def test_the_seed_entries_are_valid_config(seed, repo):
    import jsonschema

    schema = yaml.safe_load((repo / "src/cxratlas/schemas/config.schema.yaml").read_text())
    assert list(seed) == [
        "rad_dino", "medgemma", "medsiglip", "chexagent", "medimageinsight", "biomedclip"
    ]  # fmt: skip
    kinds = {name: e["kind"] for name, e in seed.items()}
    assert kinds == {
        "rad_dino": "hf_automodel",
        "medgemma": "hf_vision_tower",
        "medsiglip": "hf_automodel",
        "chexagent": "hf_vision_tower",
        "medimageinsight": "timm",
        "biomedclip": "open_clip",
    }
    # CheXagent's column is CheXagent-2's own encoder, not one of its README's byproducts
    assert seed["chexagent"]["weights"] == "StanfordAIMI/CheXagent-2-3b"
    assert seed["chexagent"]["tower"] == "chexagent"
    model_schema = {"$defs": schema["$defs"], **schema["$defs"]["model"]}
    for name, entry in seed.items():
        jsonschema.validate(entry, model_schema)
        assert "revision" in entry and not entry.get("trust_remote_code")
        rev = entry["revision"]
        assert rev is None or (len(rev) == 40 and int(rev, 16) >= 0), name


def test_rad_dino_pooler_is_the_cls_token(seed, tiny):
    from transformers import AutoModel

    m = _load(seed, tiny, "rad_dino")
    x = np.stack([m.preprocess(_cxr(seed=i)) for i in range(3)])
    emb = m.embed(x)
    assert emb.shape == (3, 32) and emb.dtype == np.float32
    ref = AutoModel.from_pretrained(tiny["rad_dino"][0]).eval()
    with torch.no_grad():
        out = ref(pixel_values=torch.as_tensor(x))
    assert np.allclose(emb, out.last_hidden_state[:, 0].numpy(), atol=1e-5)


@pytest.mark.parametrize("hub_layout", [False, True])
def test_medgemma_vision_tower_without_the_language_model(seed, tiny, tmp_path, hub_layout):
    from transformers import Gemma3ForConditionalGeneration

    folder = tiny["medgemma"][0]
    if hub_layout:  # the older hub naming: vision_tower.vision_model.*
        folder = tiny_models.to_hub_layout(folder, tmp_path / "hub")
    m = load_embedder("medgemma", {**seed["medgemma"], "weights": str(folder)}, device="cpu")
    assert type(m.model).__name__ == "SiglipVisionModel"
    assert not any("language_model" in n for n, _ in m.model.named_parameters())
    x = np.stack([m.preprocess(_cxr(seed=i)) for i in range(2)])
    emb = m.embed(x)
    full = Gemma3ForConditionalGeneration.from_pretrained(tiny["medgemma"][0]).eval()
    with torch.no_grad():
        ref = full.model.vision_tower(pixel_values=torch.as_tensor(x)).last_hidden_state.mean(1)
    assert emb.shape == (2, 32) and np.allclose(emb, ref.numpy(), atol=1e-5)


def test_medgemma_preprocessing_is_a_squash_to_square_with_half_mean_std(seed, tiny):
    m = _load(seed, tiny, "medgemma")
    img = np.full((90, 70), 128, np.uint8)
    img[:8] = 255  # a bright top band: a centre crop would cut it, a squash keeps it
    x = m.preprocess(Image.fromarray(img))
    assert x.shape == (3, 56, 56)
    assert np.allclose(x[:, 28, 28], (128 / 255 - 0.5) / 0.5, atol=1e-3)
    assert x[0, 0].mean() > 0.9  # (255/255 - 0.5) / 0.5 = 1


def test_medsiglip_is_the_normalised_image_embeds_of_a_padded_square(seed, tiny):
    """Google's embedding: SiglipModel's image_embeds (the pooled head, L2-normalised), on the
    film padded to a square with black borders, as Google's serving code prepares it."""
    from transformers import SiglipModel

    m = _load(seed, tiny, "medsiglip")
    film = np.full((90, 60), 200, np.uint8)  # portrait: padded left and right, not squashed
    x = m.preprocess(Image.fromarray(film))
    assert x.shape == (3, 56, 56)
    assert np.allclose(x[:, 28, 1], -1, atol=1e-3) and np.allclose(x[:, 28, 28], 200 / 127.5 - 1)
    batch = np.stack([m.preprocess(_cxr(seed=i)) for i in range(2)])
    emb = m.embed(batch)
    ref = SiglipModel.from_pretrained(tiny["medsiglip"][0]).eval()
    with torch.no_grad():
        out = ref(pixel_values=torch.as_tensor(batch), input_ids=torch.zeros(2, 4, dtype=int))
    assert emb.shape == (2, 32) and np.allclose(emb, out.image_embeds.numpy(), atol=1e-5)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_chexagent_is_the_tower_inside_chexagent_2(seed, tiny):
    """The SigLIP tower CheXagent-2's checkpoint holds (`model.visual.model.*`), built from
    the XraySigLIP repo's config with no remote code and no language model; the vector is the
    mean of the tokens its language model reads (the last layer before the final norm)."""
    from safetensors.torch import load_file
    from transformers import SiglipVisionConfig, SiglipVisionModel

    m = _load(seed, tiny, "chexagent")
    assert type(m.model).__name__ == "SiglipVisionModel"
    x = np.stack([m.preprocess(_cxr(seed=i)) for i in range(2)])
    # `size: tower`: the tower config's image_size (64), not its processor file's (48)
    assert x.shape == (2, 3, 64, 64) and m.processor.resample == 3
    emb = m.embed(x)
    folder, overrides = tiny["chexagent"]
    import json

    vision = json.loads((Path(overrides["config_from"]["weights"]) / "config.json").read_text())
    ref = SiglipVisionModel(SiglipVisionConfig(**vision["vision_config"])).eval()
    prefix = "model.visual.model."
    state = load_file(str(folder / "model.safetensors"))
    ref.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    with torch.no_grad():
        hidden = ref(pixel_values=torch.as_tensor(x), output_hidden_states=True).hidden_states
    assert emb.shape == (2, 32) and np.allclose(emb, hidden[-1].mean(1).numpy(), atol=1e-5)
    # the resampler and the language model are not the tower: a wrong mapping is refused
    with pytest.raises(ModelConfigError, match="matches the tower's key patterns|not in"):
        _load(seed, tiny, "chexagent", key_mapping={r"^model\.visual\.": ""})


def test_chexagent_8b_tower_loads_into_blip2_without_remote_code(tmp_path):
    from transformers import Blip2VisionConfig, Blip2VisionModel

    folder = tiny_models.chexagent_8b(tmp_path / "chexagent-8b")
    entry = {
        "kind": "hf_vision_tower",
        "weights": str(folder),
        "tower": "blip2",
        "pooling": "pooler",
        "preprocess": {"size": 56, "mean": "clip", "std": "clip"},
    }
    m = load_embedder("chexagent_8b_tower", entry, device="cpu")
    x = m.preprocess(_cxr())[None]
    emb = m.embed(x)
    # the reference: the same tensors loaded by hand into the class
    from safetensors.torch import load_file

    state = {
        k[len("vision_model.") :]: v
        for k, v in load_file(str(folder / "model.safetensors")).items()
        if k.startswith("vision_model.")
    }
    ref = Blip2VisionModel(
        Blip2VisionConfig(**tiny_models.TINY_VISION, image_size=56, qkv_bias=True)
    )
    ref.load_state_dict(state, strict=True)
    with torch.no_grad():
        want = ref.eval()(pixel_values=torch.as_tensor(x)).pooler_output
    assert emb.shape == (1, 32) and np.allclose(emb, want.numpy(), atol=1e-5)
    # a wrong key mapping leaves tower weights unloaded: refused, not silently random
    with pytest.raises(ModelConfigError, match="weights are not in"):
        load_embedder("bad", {**entry, "key_mapping": {"^nothing": ""}}, device="cpu")


def test_medimageinsight_equals_timm_davit_plus_projection(seed, tiny):
    import timm
    from timm.models.davit import checkpoint_filter_fn  # noqa: F401  (the remap under test)

    m = _load(seed, tiny, "medimageinsight")
    x = np.stack([m.preprocess(_cxr(seed=i)) for i in range(2)])
    assert x.shape == (2, 3, 480, 480)
    emb = m.embed(x)
    assert emb.shape == (2, 8) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # rebuild the same network from the loaded weights and project by hand
    ref = timm.create_model(
        "davit_huge_fl", pretrained=False, num_classes=0, **tiny["medimageinsight"][1]["model_args"]
    )
    ref.load_state_dict(
        {k: v for k, v in m.model.state_dict().items() if k != "cxr_atlas_projection"}
    )
    with torch.no_grad():
        feat = ref.eval().forward_head(ref.forward_features(torch.as_tensor(x)), pre_logits=True)
        want = torch.nn.functional.normalize(feat @ m.projection, dim=-1)
    assert np.allclose(emb, want.numpy(), atol=1e-5)


def test_medimageinsight_remap_is_needed_and_checked(seed, tiny):
    with pytest.raises(ModelConfigError, match="does not fit davit_huge_fl"):
        _load(seed, tiny, "medimageinsight", remap="none")
    with pytest.raises(ModelConfigError, match="no tensor .* starts with key_prefix 'vision.'"):
        _load(seed, tiny, "medimageinsight", key_prefix="vision.")


def test_medimageinsight_preprocessing_matches_the_release(seed, tiny):
    m = _load(seed, tiny, "medimageinsight")
    x = m.preprocess(Image.new("L", (300, 400), 128))
    want = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert x.shape == (3, 480, 480) and np.allclose(x[:, 240, 240], want, atol=1e-4)


def test_biomedclip_encode_image_and_clip_preprocessing(seed, tiny):
    import open_clip

    m = _load(seed, tiny, "biomedclip")
    img = np.full((300, 224), 128, np.uint8)
    img[:20] = 255  # top band of a tall image: shortest-edge resize + centre crop removes it
    x = m.preprocess(Image.fromarray(img))
    want = (128 / 255 - np.array([0.48145466, 0.4578275, 0.40821073])) / np.array(
        [0.26862954, 0.26130258, 0.27577711]
    )
    assert x.shape == (3, 224, 224)
    assert np.allclose(x[:, 0, 112], want, atol=2e-2)  # the band was cropped away
    batch = np.stack([m.preprocess(_cxr(seed=i)) for i in range(2)])
    emb = m.embed(batch)
    ref = open_clip.create_model(f"local-dir:{tiny['biomedclip'][0]}").eval()
    with torch.no_grad():
        want_emb = ref.encode_image(torch.as_tensor(batch))
    assert emb.shape == (2, 16) and np.allclose(emb, want_emb.numpy(), atol=1e-5)


def test_sixteen_bit_png_is_windowed_before_the_processor(seed, tiny, tmp_path):
    """HF processors divide I;16 by 255 and saturate; we convert to 8-bit first."""
    ramp = np.tile(np.linspace(1000, 60000, 64), (64, 1)).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    m = _load(seed, tiny, "rad_dino")
    x = m.preprocess(load_gray8(path))
    lo, hi = (0 - 0.5307) / 0.2583, (1 - 0.5307) / 0.2583
    assert x.min() >= lo - 1e-3 and x.max() <= hi + 1e-3
    assert x.max() - x.min() > 0.9 * (hi - lo)  # the full range is used, not saturated


def test_gpu_settings_stay_off_on_a_cpu(seed, tiny):
    m = _load(seed, tiny, "medimageinsight")
    assert m.device == "cpu" and m.dtype_name == "float32"  # bf16 is for GPUs only
    meta = m.describe()  # what every shard's metadata records
    assert meta["dtype"] == "float32" and meta["kind"] == "timm"
    assert meta["dtype_requested"] == "bfloat16" and meta["device"] == "cpu"


@pytest.mark.parametrize(
    ("requested", "capability", "runs"),
    [
        ("bfloat16", (9, 0), "bfloat16"),  # H100
        ("bfloat16", (8, 0), "bfloat16"),  # A100
        ("bfloat16", (7, 5), "float32"),  # T4: no native bfloat16
        ("bfloat16", (7, 0), "float32"),  # V100
        ("float16", (7, 0), "float16"),
        ("float32", (9, 0), "float32"),
    ],
)
def test_bfloat16_only_where_the_gpu_has_it(requested, capability, runs):
    from cxratlas.embed.models.base import gpu_dtype

    assert gpu_dtype(requested, capability) == runs


@pytest.mark.gpu
def test_a_gpu_shard_records_the_dtype_its_device_supports(seed, tiny):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    m = load_embedder("rad_dino", {**seed["rad_dino"], "weights": str(tiny["rad_dino"][0])})
    major, _ = torch.cuda.get_device_capability()
    assert m.describe()["dtype"] == ("bfloat16" if major >= 8 else "float32")
    assert m.describe()["device"].startswith("cuda: ")


def test_a_third_party_checkpoint_is_checked_against_its_hash(seed, tiny, tmp_path, monkeypatch):
    """MedImageInsight comes from a repackage whose file can change under a study: a pinned
    sha256 is checked at every load; with none pinned, the first load records the file's hash
    and every later load checks it."""
    import shutil

    from cxratlas.embed.models.weights import _sha256, sha256_record

    monkeypatch.setenv("CXRATLAS_HOME", str(tmp_path / "home"))
    folder = shutil.copytree(tiny["medimageinsight"][0], tmp_path / "mii")
    ckpt = folder / seed["medimageinsight"]["checkpoint"]
    entry = {**seed["medimageinsight"], "weights": str(folder),
             "model_args": tiny["medimageinsight"][1]["model_args"]}  # fmt: skip
    with pytest.raises(ModelConfigError, match=f"has sha256 {_sha256(ckpt)}, but the entry pins"):
        load_embedder("mii", {**entry, "sha256": "0" * 64}, device="cpu")
    del entry["sha256"]
    load_embedder("mii", entry, device="cpu")  # the first load records the hash
    record = sha256_record(entry, ckpt)
    assert record.read_text().strip() == _sha256(ckpt)
    load_embedder("mii", entry, device="cpu")  # unchanged: loads
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt))
    state["image_projection"] = state["image_projection"] * 2  # the file changes upstream
    save_file(state, str(ckpt), metadata={"format": "pt"})
    with pytest.raises(ModelConfigError, match="was recorded at its first load"):
        load_embedder("mii", entry, device="cpu")
    load_embedder("mii", {**entry, "sha256": _sha256(ckpt)}, device="cpu")  # pinned anew


def test_unpinned_entries_are_named_for_the_plan(seed):
    from cxratlas.embed.models.weights import pin_warnings

    lines = pin_warnings(seed)
    named = {line.split("'")[1] for line in lines}
    unpinned = {n for n, e in seed.items() if not e.get("revision")}
    assert named == unpinned and "rad_dino" not in named and "biomedclip" not in named
    assert any("config_from StanfordAIMI/XraySigLIP" in line for line in lines)
    assert pin_warnings({"local": {"weights": "/models/rad-dino"}}) == []
