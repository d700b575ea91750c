"""Tiny random-weight models of the seed models' classes, saved in each release's file layout.

Each builder writes a folder that the real loader reads exactly as it reads the real download;
only the sizes differ (recipes: ../shared/reference/models.md, section 6). Also used by
benchmarks/seed_models.py (the GPU check) and by the tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TINY_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14
)


def rad_dino(out: Path) -> Path:
    """microsoft/rad-dino: Dinov2Model + BitImageProcessor (518 -> 56 px here)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

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


def medgemma(out: Path) -> Path:
    """google/medgemma-4b-it: Gemma3ForConditionalGeneration (SigLIP tower + LM) + its processor."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor

    cfg = Gemma3Config(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            vocab_size=300,
            sliding_window=16,
        ),
        vision_config=dict(
            **TINY_VISION, image_size=56, vision_use_head=False, model_type="siglip_vision_model"
        ),
        mm_tokens_per_image=4,
        image_token_index=299,
        boi_token_index=297,
        eoi_token_index=298,
    )
    Gemma3ForConditionalGeneration(cfg).eval().save_pretrained(out)
    Gemma3ImageProcessor(
        size={"height": 56, "width": 56},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        do_pan_and_scan=False,
        do_convert_rgb=None,  # as google/medgemma-4b-it's processor: grey is not made RGB
    ).save_pretrained(out)
    return out


def sharded(src: Path, out: Path, max_shard_size: str = "40KB") -> Path:
    """A copy of a saved tiny Gemma-3 checkpoint cut into several safetensors shards with a
    `model.safetensors.index.json`, as google/medgemma-4b-it is published: at this size the
    language model and the vision tower fall in different shards."""
    import shutil

    from transformers import Gemma3ForConditionalGeneration

    Gemma3ForConditionalGeneration.from_pretrained(src).save_pretrained(
        out, max_shard_size=max_shard_size
    )
    for f in src.glob("*.json"):
        if not (out / f.name).exists():
            shutil.copy(f, out / f.name)
    return out


def to_hub_layout(src: Path, out: Path) -> Path:
    """A copy of a saved Gemma-3 checkpoint with the older hub tensor names
    (`vision_tower.vision_model.*`, as google/medgemma-4b-it is published)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, out)
    path = out / "model.safetensors"
    state = load_file(str(path))
    renamed = {
        re.sub(r"^(model\.)?vision_tower\.(?!vision_model\.)", "vision_tower.vision_model.", k): v
        for k, v in state.items()
    }
    save_file(renamed, str(path), metadata={"format": "pt"})
    return out


def chexagent_siglip(out: Path) -> Path:
    """StanfordAIMI/XraySigLIP__*: a plain SiglipModel + SiglipImageProcessor."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    vision = {k: v for k, v in TINY_VISION.items()} | {"image_size": 56}
    cfg = SiglipConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=100,
            max_position_embeddings=16,
        ),
        vision_config=vision,
    )
    SiglipModel(cfg).eval().save_pretrained(out)
    SiglipImageProcessor(
        size={"height": 56, "width": 56}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(out)
    return out


def chexagent_2(out: Path) -> tuple[Path, Path]:
    """StanfordAIMI/CheXagent-2-3b's layout and the repo its tower is built from. CheXagent-2's
    remote code (modeling_chexagent.CheXagentForCausalLM -> .model.visual, a
    modeling_visual.CLIPModel whose .model is `AutoModel.from_pretrained(<XraySigLIP repo>)
    .vision_model`) stores the tower as `model.visual.model.*`, beside its resampler
    (`model.visual.attn_pool/ln_post/proj`) and a Phi-2-shaped language model; its config.json
    has a `visual` section naming the XraySigLIP repo, whose own config.json holds the tower's
    `vision_config` and whose processor gives the mean and std. Returns (checkpoint folder,
    XraySigLIP folder)."""
    import torch
    from safetensors.torch import save_file
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipVisionModel

    vision = {**TINY_VISION, "image_size": 64, "patch_size": 16}
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, vocab_size=100, max_position_embeddings=16)  # fmt: skip
    xray = out / "xraysiglip"
    xray.mkdir(parents=True, exist_ok=True)
    (xray / "config.json").write_text(
        json.dumps(SiglipConfig(text_config=text, vision_config=vision).to_dict())
    )
    SiglipImageProcessor(
        size={"height": 48, "width": 48}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(xray)
    tower = SiglipVisionModel(SiglipVisionModel.config_class(**vision)).eval()
    state = {f"model.visual.model.{k}": v.contiguous() for k, v in tower.state_dict().items()}
    state["model.visual.attn_pool.0.weight"] = torch.zeros(40, 32)
    state["model.visual.ln_post.weight"] = torch.ones(10)
    state["model.visual.proj"] = torch.zeros(10, 10)
    state["model.layers.0.mlp.fc1.weight"] = torch.zeros(8, 8)
    state["lm_head.weight"] = torch.zeros(12, 8)
    ckpt = out / "chexagent-2"
    ckpt.mkdir(parents=True, exist_ok=True)
    save_file(state, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    (ckpt / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["CheXagentForCausalLM"],
                "model_type": "chexagent",
                "auto_map": {"AutoModelForCausalLM": "modeling_chexagent.CheXagentForCausalLM"},
                "visual": {
                    "image_size": 64,
                    "output_dim": 10,
                    "vision_model_name_or_path": str(xray),
                },  # fmt: skip
            }
        )
    )
    return ckpt, xray


def chexagent_8b(out: Path) -> Path:
    """StanfordAIMI/CheXagent-8b's layout: a custom `chexagent` config (remote code) whose
    `vision_config` has Blip2VisionConfig's fields, `vision_model.*` tensors beside Q-Former and
    language-model tensors, and no processor file that plain transformers can read."""
    import torch
    from safetensors.torch import save_file
    from transformers import Blip2VisionConfig, Blip2VisionModel

    vcfg = Blip2VisionConfig(**TINY_VISION, image_size=56, qkv_bias=True)
    tower = Blip2VisionModel(vcfg).eval()
    out.mkdir(parents=True, exist_ok=True)
    state = {f"vision_model.{k}": v.contiguous() for k, v in tower.state_dict().items()}
    state["qformer.layernorm.weight"] = torch.ones(16)
    state["language_model.lm_head.weight"] = torch.zeros(8, 16)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    vision = vcfg.to_dict() | {"model_type": "chexagent_vision_model"}
    (out / "config.json").write_text(
        json.dumps(
            {
                "model_type": "chexagent",
                "architectures": ["CheXagentForConditionalGeneration"],
                "auto_map": {
                    "AutoModelForCausalLM": "modeling_chexagent.CheXagentForConditionalGeneration"
                },
                "vision_config": vision,
                "qformer_config": {"hidden_size": 16},
            }
        )
    )
    return out


def biomedclip(out: Path) -> Path:
    """microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224: open_clip_config.json (the real
    one with a small ViT and a 16-d projection) + open_clip_pytorch_model.bin; a tiny BERT stands in
    for BiomedBERT. The ViT is a registered timm name so Snakemake job processes can build it."""
    import open_clip
    import torch
    from transformers import BertConfig, BertModel

    bert = out / "tiny-bert"
    BertModel(
        BertConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=100,
        )
    ).save_pretrained(bert)
    (bert / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]))
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": {
                "timm_model_name": "vit_tiny_patch16_224",  # smallest registered ViT-B/16 sibling
                "timm_model_pretrained": False,
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": 224,
            },
            "text_cfg": {
                "hf_model_name": str(bert),
                "hf_tokenizer_name": str(bert),
                "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": 256,
            },
        },
        "preprocess_cfg": {
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
        },
    }
    (model_dir / "open_clip_config.json").write_text(json.dumps(cfg))
    model = open_clip.create_model(f"local-dir:{model_dir}", pretrained_text=False)
    torch.save(model.state_dict(), model_dir / "open_clip_pytorch_model.bin")
    return model_dir


TINY_DAVIT = dict(
    depths=(1, 1, 2, 1), embed_dims=(16, 32, 64, 128), num_heads=(2, 4, 8, 16), window_size=4
)


def _timm_to_florence(key: str) -> str:
    """timm DaViT key -> the MedImageInsight release's (inverse of timm's Florence-2 remap)."""
    key = re.sub(r"^stem\.conv\.", "convs.0.proj.", key)
    key = re.sub(r"^stem\.norm\.", "convs.0.norm.", key)
    key = re.sub(r"^stages\.(\d+)\.downsample\.conv\.", r"convs.\1.proj.", key)
    key = re.sub(r"^stages\.(\d+)\.downsample\.norm\.", r"convs.\1.norm.", key)
    key = key.replace("head.norm.", "norms.")
    m = re.match(r"^stages\.(\d+)\.blocks\.(\d+)\.(spatial_block|channel_block)\.(.*)$", key)
    if m:
        s, b, block, rest = m.groups()
        attn = "window_attn" if block == "spatial_block" else "channel_attn"
        for old, new in (
            ("norm1.", f"{attn}.norm."),
            ("attn.", f"{attn}.fn."),
            ("norm2.", "ffn.norm."),
            ("mlp.", "ffn.fn.net."),
            ("cpe1.proj.", "conv1.fn.dw."),
            ("cpe2.proj.", "conv2.fn.dw."),
        ):
            if rest.startswith(old):
                rest = new + rest[len(old) :]
                break
        key = f"blocks.{s}.{b}.{block}.{rest}"
    return key


def medimageinsight(out: Path) -> tuple[Path, dict]:
    """lion-ai/MedImageInsights: `2024.09.27/vision_model/medimageinsigt-v1.0.0.pt`, a safetensors
    file despite the suffix, with `image_encoder.*` (Florence DaViT naming), `image_projection`
    and language-model tensors. Returns (folder, timm model_args)."""
    import timm
    import torch
    from safetensors.torch import save_file

    model = timm.create_model("davit_huge_fl", pretrained=False, num_classes=0, **TINY_DAVIT).eval()
    state = {
        f"image_encoder.{_timm_to_florence(k)}": v.contiguous()
        for k, v in model.state_dict().items()
    }
    state["image_projection"] = torch.randn(128, 8, generator=torch.Generator().manual_seed(0))
    state["lang_encoder.token_embedding.weight"] = torch.zeros(10, 8)
    path = out / "2024.09.27" / "vision_model" / "medimageinsigt-v1.0.0.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    return out, {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_DAVIT.items()}
