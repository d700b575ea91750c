"""Each seed loader against its authors' own files, offline (tests/data/models/README.md says
where every file comes from): architecture built on the meta device from the real config, our
key mapping applied to the real checkpoint's key list with strict key and shape coverage,
preprocessing read from the real config, the embedding size read from the config. Unlike
tests/test_seed_models.py (tiny random models), nothing here was produced by our own code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

DATA = Path(__file__).resolve().parent / "data" / "models"


def release_keys(path: Path) -> dict[str, tuple[int, ...]]:
    """A key list file: `key<TAB>comma-separated shape` per line, `#` comments."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            out[key] = tuple(int(s) for s in shape.split(",") if s)
    return out


@pytest.fixture(scope="module")
def seed(repo):
    return yaml.safe_load((repo / "config/models/seed.yaml").read_text())["models"]


@pytest.fixture(scope="module")
def mii_config():
    return yaml.safe_load((DATA / "medimageinsight/config.yaml").read_text())


def _meta_davit(entry):
    with torch.device("meta"):
        return timm.create_model(entry["architecture"], pretrained=False, num_classes=0,
                                 **entry.get("model_args", {}))  # fmt: skip


def test_medimageinsight_timm_architecture_is_the_release_config(seed, mii_config):
    """davit_huge_fl's stages, heads, groups, window and patch embeddings are the ones the
    release's config.yaml gives its DaViT (IMAGE_ENCODER.SPEC)."""
    spec = mii_config["IMAGE_ENCODER"]["SPEC"]
    model = _meta_davit(seed["medimageinsight"])
    stages = list(model.stages)
    assert [len(s.blocks) for s in stages] == spec["DEPTHS"]
    assert [s.blocks[0].spatial_block.attn.num_heads for s in stages] == spec["NUM_HEADS"]
    assert [s.blocks[0].channel_block.attn.groups for s in stages] == spec["NUM_GROUPS"]
    assert {s.blocks[0].spatial_block.window_size for s in stages} == {(spec["WINDOW_SIZE"],) * 2}
    convs = [model.stem.conv] + [s.downsample.conv for s in stages[1:]]
    assert [c.out_channels for c in convs] == spec["DIM_EMBED"]
    assert [c.kernel_size[0] for c in convs] == spec["PATCH_SIZE"]
    assert [c.stride[0] for c in convs] == spec["PATCH_STRIDE"]
    assert [c.padding[0] for c in convs] == spec["PATCH_PADDING"]


def test_medimageinsight_remap_covers_every_release_tensor_with_its_shape(seed):
    """Our remap takes the release's own tensor names (listed from the authors' UniCL/DaViT
    code, not from timm's mapping) onto timm's, every one of them, each with its shape."""
    from cxratlas.embed.models.timm_state_dict import REMAPS

    entry = seed["medimageinsight"]
    keys = release_keys(DATA / "medimageinsight/keys.tsv")
    prefix = entry["key_prefix"]
    state = {k[len(prefix) :]: torch.empty(s, device="meta")
             for k, s in keys.items() if k.startswith(prefix)}  # fmt: skip
    model = _meta_davit(entry)
    remapped = REMAPS[entry["remap"]](state, model)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in remapped.items()} == want
    model.load_state_dict(remapped, strict=True, assign=True)
    # the projection: the pooled 2048-d feature times image_projection gives the embedding
    assert keys[entry["projection_key"]] == (want["head.norm.weight"][0], 1024)


def test_medimageinsight_embedding_size_and_preprocessing_come_from_the_config(seed, mii_config):
    """1024-d (UNICL_MODEL.DIM_PROJECTION); IMAGE_SIZE 480 squashed (TEST.CENTER_CROP false),
    bicubic (AUG.INTERPOLATION), the config's mean and std."""
    from cxratlas.embed.models.preprocess import ImageTransform

    keys = release_keys(DATA / "medimageinsight/keys.tsv")
    assert keys["image_projection"][1] == mii_config["UNICL_MODEL"]["DIM_PROJECTION"] == 1024
    t = ImageTransform.from_entry("medimageinsight", seed["medimageinsight"]["preprocess"])
    enc = mii_config["IMAGE_ENCODER"]
    assert [t.height, t.width] == enc["IMAGE_SIZE"]
    assert mii_config["TEST"]["CENTER_CROP"] is False and t.resize == "squash"
    assert t.interpolation == mii_config["AUG"]["INTERPOLATION"] == "bicubic"
    assert np.allclose(t.mean, enc["IMAGE_MEAN"]) and np.allclose(t.std, enc["IMAGE_STD"])
    # a synthetic portrait film: a squash keeps the bright top band a centre crop would cut
    film = np.full((600, 400), 100, np.uint8)
    film[:30] = 250
    x = t(Image.fromarray(film).convert("RGB"))
    assert x.shape == (3, 480, 480)
    top = (250 / 255 - np.array(enc["IMAGE_MEAN"])) / np.array(enc["IMAGE_STD"])
    assert np.allclose(x[:, 5, 240], top, atol=1e-4)


def test_the_tiny_release_layout_names_tensors_as_the_release_does():
    """tests' tiny MedImageInsight checkpoint renames timm's tensors to the release's names;
    applied to the full-size architecture that renaming gives exactly the release's key list,
    so the tiny fixture is checked against real data rather than against our own remap."""
    from cxratlas.testing.tiny_models import _timm_to_florence

    keys = release_keys(DATA / "medimageinsight/keys.tsv")
    with torch.device("meta"):
        model = timm.create_model("davit_huge_fl", pretrained=False, num_classes=0)
    named = {f"image_encoder.{_timm_to_florence(k)}": tuple(v.shape)
             for k, v in model.state_dict().items()}  # fmt: skip
    assert named == {k: s for k, s in keys.items() if k.startswith("image_encoder.")}


# --- RAD-DINO: the release's processor file; the architecture from RAD-DINO-MAIRA-2's config ---


def portrait_film() -> Image.Image:
    """A synthetic 600 x 400 (portrait) grey film: 100 everywhere but a bright top band, which a
    shortest-edge resize and centre crop cuts off and a squash would keep."""
    film = np.full((600, 400), 100, np.uint8)
    film[:30] = 250
    return Image.fromarray(film)


def _rad_dino_processor(seed):
    """Our loader's own processor set-up (`_HFEmbedder._processor`: backend "pil", grey made RGB
    by us) pointed at the release's preprocessor_config.json; no weights are read."""
    pytest.importorskip("transformers")
    from cxratlas.embed.models.hf import HFAutoModelEmbedder

    embedder = HFAutoModelEmbedder.__new__(HFAutoModelEmbedder)  # no model: only the processor
    embedder.name, embedder.entry = "rad_dino", seed["rad_dino"]
    embedder._processor(DATA / "rad_dino", None, False)
    return embedder


def test_rad_dino_preprocessing_is_the_release_processor(seed):
    """No `preprocess` block in the entry, so the release's BitImageProcessor is what runs: short
    side to 518, a 518 centre crop, bicubic, RAD-DINO's own grey mean and std."""
    cfg = json.loads((DATA / "rad_dino/preprocessor_config.json").read_text())
    assert "preprocess" not in seed["rad_dino"]
    embedder = _rad_dino_processor(seed)
    p = embedder.processor
    assert p.size == {"shortest_edge": 518} and p.crop_size == {"height": 518, "width": 518}
    assert p.do_center_crop and p.resample == 3  # PIL's BICUBIC
    assert list(p.image_mean) == cfg["image_mean"] and list(p.image_std) == cfg["image_std"]
    x = embedder.preprocess(portrait_film())
    assert x.shape == (3, 518, 518)
    # 600 x 400 -> 777 x 518, crop rows 129..646: the band (rows 0..38) is cut, so row 5 is film
    film = (100 / 255 - 0.5307) / 0.2583
    assert np.allclose(x[:, (5, 259), 259], film, atol=1e-5)  # top and centre


def test_rad_dino_architecture_and_embedding_size_come_from_the_config(seed):
    """AutoModel (our `hf_automodel` loader) builds a Dinov2Model from the config: ViT-B/14 with
    layer scale, 518 px (37 x 37 patches + CLS), and the `pooler` embedding is the layer-normed
    CLS token, 768-d. The processor's crop is the size the position embeddings were made for."""
    pytest.importorskip("transformers")
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(DATA / "rad_dino_maira_2")
    with torch.device("meta"):
        model = AutoModel.from_config(cfg)
    assert type(model).__name__ == "Dinov2Model" and seed["rad_dino"]["pooling"] == "pooler"
    assert len(model.encoder.layer) == 12 and hasattr(model.encoder.layer[0], "layer_scale1")
    crop = json.loads((DATA / "rad_dino/preprocessor_config.json").read_text())["crop_size"]
    # the crop fills the grid the position embeddings were trained on: no interpolation
    assert crop["height"] == crop["width"] == cfg.image_size
    assert cfg.image_size % cfg.patch_size == 0
    assert tuple(model.embeddings.position_embeddings.shape) == (1, 37 * 37 + 1, 768)
    out = model(pixel_values=torch.empty(1, 3, crop["height"], crop["width"], device="meta"))
    assert tuple(out.pooler_output.shape) == (1, 768)


# --- BiomedCLIP: the release's open_clip_config.json ---


def _biomedclip_config() -> dict:
    return json.loads((DATA / "biomedclip/open_clip_config.json").read_text())


def test_biomedclip_vision_tower_and_embedding_size_come_from_the_config():
    """open_clip builds the image tower from vision_cfg: timm's ViT-B/16 at 224 px, no pooling
    in timm (open_clip takes the CLS token), a linear projection to embed_dim, 512-d."""
    open_clip = pytest.importorskip("open_clip")
    cfg = _biomedclip_config()["model_cfg"]
    with torch.device("meta"):
        visual = open_clip.model._build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
    assert tuple(visual.trunk.pos_embed.shape) == (1, (224 // 16) ** 2 + 1, 768)
    assert (visual.head.proj.in_features, visual.head.proj.out_features) == (768, 512)
    out = visual(torch.empty(1, 3, 224, 224, device="meta"))
    assert tuple(out.shape) == (1, cfg["embed_dim"]) == (1, 512)


@pytest.fixture(scope="module")
def biomedclip(seed, tmp_path_factory):
    """Our open_clip loader on the release's config; only the text tower's names point at a
    tiny local BERT (BiomedBERT itself would be a download, and encode_image never reads it).
    No checkpoint: the weights stay random, which the preprocessing does not depend on."""
    pytest.importorskip("open_clip")
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertModel

    from cxratlas.embed.models.open_clip_model import OpenCLIPEmbedder

    root = tmp_path_factory.mktemp("biomedclip")
    bert = root / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, vocab_size=8)).save_pretrained(bert)  # fmt: skip
    (bert / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]))
    cfg = _biomedclip_config()
    cfg["model_cfg"]["text_cfg"] |= {"hf_model_name": str(bert), "hf_tokenizer_name": str(bert)}
    folder = root / "model"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    entry = seed["biomedclip"] | {"weights": str(folder), "revision": None}
    return OpenCLIPEmbedder("biomedclip", entry, device="cpu")


def test_biomedclip_preprocessing_is_the_release_config(biomedclip):
    """open_clip's eval transform from the config: short side to 224 (bicubic), a 224 centre
    crop, the config's CLIP mean and std, each channel its own statistics."""
    cfg = _biomedclip_config()["preprocess_cfg"]
    resize, crop = biomedclip.transform.transforms[:2]
    assert resize.size == 224 and resize.interpolation.value == "bicubic"
    assert tuple(crop.size) == (224, 224)
    x = biomedclip.preprocess(portrait_film())
    assert x.shape == (3, 224, 224)
    # 600 x 400 -> 336 x 224, crop rows 56..279: the band (rows 0..17) is cut
    film = (100 / 255 - np.array(cfg["mean"])) / np.array(cfg["std"])
    assert np.allclose(film, [-0.3324, -0.2513, -0.0582], atol=1e-4)  # by hand, as a check
    assert np.allclose(x[:, (5, 112), 112], film[:, None], atol=1e-5)  # top and centre
    assert biomedclip.model.visual.head.proj.out_features == 512


def test_chexagent_2_tower_mapping_covers_the_real_tensor_names_strictly(seed):
    """The names of the SigLIP vision tensors CheXagent-2-3b loads (a log of the real load,
    `chexagent_2/tower_keys.txt`), as its checkpoint holds them (`CLIPModel.model` is that
    SiglipModel's `vision_model`: `model.visual.model.<name after vision_model.>`), become
    exactly the SiglipVisionModel's own names under our `tower: chexagent` mapping, with the
    24 layers and attention-pool head the log shows (ViT-L depth): none missing, none left over.
    Shapes were not printed; the tower's config is read from its repo at load."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from cxratlas.embed.models.hf import TOWERS, mapped_key

    lines = (DATA / "chexagent_2/tower_keys.txt").read_text().splitlines()
    names = [n for n in lines if n and not n.startswith("#")]
    assert len(names) == 400 and all(n.startswith("vision_model.") for n in names)
    in_checkpoint = ["model.visual.model." + n.removeprefix("vision_model.") for n in names]
    _, mapping = TOWERS[seed["chexagent"]["tower"]]
    mapped = [mapped_key(k, mapping) for k in in_checkpoint]
    depth = 1 + max(int(n.split(".")[3]) for n in names if ".encoder.layers." in n)
    assert depth == 24  # SigLIP ViT-L/16 (B/16: 12, so400m: 27)
    with torch.device("meta"):
        tower = SiglipVisionModel(SiglipVisionConfig(num_hidden_layers=depth))
    assert tower.config.vision_use_head  # the log's head.* tensors: the default, kept
    assert sorted(mapped) == sorted(tower.state_dict())
    # the resampler and language model beside it in the checkpoint are never read
    assert mapped_key("model.visual.attn_pool.0.weight", mapping) is None
    assert mapped_key("model.layers.0.mlp.fc1.weight", mapping) is None


# --- MedSigLIP-448: its processor file (a public mirror of the gated release) ---


def test_medsiglip_preprocessing_is_the_release_processor_after_googles_padding(seed):
    """MedSigLIP's SiglipImageProcessor (448 x 448, bicubic, mean and std 0.5: pixels in
    [-1, 1]), after the zero padding to a square Google's serving code applies: a portrait film
    keeps its whole height, and its sides are black (-1), not stretched film."""
    pytest.importorskip("transformers")
    from cxratlas.embed.models.hf import HFAutoModelEmbedder

    cfg = json.loads((DATA / "medsiglip_448/preprocessor_config.json").read_text())
    embedder = HFAutoModelEmbedder.__new__(HFAutoModelEmbedder)  # no model: only the processor
    embedder.name, embedder.entry = "medsiglip", seed["medsiglip"]
    embedder._processor(DATA / "medsiglip_448", None, False)
    p = embedder.processor
    assert type(p).__name__.startswith("SiglipImageProcessor") and p.resample == 3
    assert p.size == cfg["size"] == {"height": 448, "width": 448}
    x = embedder.preprocess(portrait_film())
    assert x.shape == (3, 448, 448)
    # 600 x 400 padded to 600 x 600 (100 black columns a side), then 448 x 448: columns below
    # 448 * 100 / 600 = 74.7 are padding, the band (rows 0..29 -> 0..22) is kept
    film, band = (100 / 255 - 0.5) / 0.5, (250 / 255 - 0.5) / 0.5
    assert np.allclose(x[:, 224, (10, 437)], -1, atol=1e-5)  # black sides
    assert np.allclose(x[:, 224, 224], film, atol=1e-5) and np.allclose(
        x[:, 5, 224], band, atol=1e-5
    )
    assert x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5
