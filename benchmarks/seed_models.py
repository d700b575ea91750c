"""GPU check for the seed models: extract N images with each seed-class model and print images/s
for reading (decode + preprocess, in DataLoader workers) and for inference, separately.

    python benchmarks/seed_models.py [-n 256] [--size 1024] [--real]

Tiny random-weight models of each seed class are built in a temp dir (no downloads). `--real`
also runs the entries of config/models/seed.yaml whose weights are in the local HF cache.
Baseline: the same model on the CPU in float32, run in the same process; the last column is
CPU inference time / GPU inference time. Without a GPU only the CPU rows are printed. The first
batch's time includes CUDA start-up, so tiny models can look slower on the GPU.
`--full-size` instead times each seed architecture at its real size and input resolution with
random weights (bf16 on a GPU, after warm-up): the compute ceiling before decoding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cxratlas.demo.phantom import generate_demo  # noqa: E402
from cxratlas.embed.extract import ShardFiles, extract_shard  # noqa: E402
from cxratlas.embed.models import ModelConfigError, load_embedder  # noqa: E402
from cxratlas.testing import tiny_models  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def tiny_entries(root: Path, seed: dict) -> dict[str, dict]:
    mii, davit_args = tiny_models.medimageinsight(root / "mii")
    cx, xray = tiny_models.chexagent_2(root / "cx")
    entries = {
        "rad_dino": {**seed["rad_dino"], "weights": str(tiny_models.rad_dino(root / "rad"))},
        "medgemma": {**seed["medgemma"], "weights": str(tiny_models.medgemma(root / "mg"))},
        "medsiglip": {
            **seed["medsiglip"],
            "weights": str(tiny_models.chexagent_siglip(root / "ms")),
        },
        "chexagent": {
            **seed["chexagent"],
            "weights": str(cx),
            "config_from": {"weights": str(xray)},  # size: tower = the tiny tower's 64
        },
        "medimageinsight": {
            **seed["medimageinsight"],
            "weights": str(mii),
            "model_args": davit_args,
        },
        "biomedclip": {**seed["biomedclip"], "weights": str(tiny_models.biomedclip(root / "bc"))},
    }
    for e in entries.values():
        e.pop("revision", None)
        e.pop("sha256", None)  # tiny stand-ins, not the releases' files
    return {f"tiny_{k}": v for k, v in entries.items()}


def seed_nets(small: bool = False) -> dict[str, tuple[object, int]]:
    """Each seed architecture (random weights) with its input size: at full size, or (`small`)
    a few-layer model of the same class for a CPU smoke run."""
    import timm
    from transformers import Dinov2Config, Dinov2Model, SiglipVisionConfig, SiglipVisionModel

    tiny = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
    if small:
        return {
            "rad_dino (Dinov2, small)": (Dinov2Model(Dinov2Config(**tiny, image_size=56)), 56),
            "medgemma tower (SigLIP, small)": (SiglipVisionModel(SiglipVisionConfig(
                **tiny, image_size=56, patch_size=14, vision_use_head=False)), 56),
            "chexagent tower (SigLIP, small)": (SiglipVisionModel(SiglipVisionConfig(
                **tiny, image_size=64, patch_size=16)), 64),
            "medimageinsight (DaViT, small)": (timm.create_model(
                "davit_huge_fl", pretrained=False, num_classes=0, depths=(1, 1, 2, 1),
                embed_dims=(16, 32, 64, 128), num_heads=(2, 4, 8, 16), window_size=4), 96),
            "biomedclip (ViT, small)": (timm.create_model(
                "vit_tiny_patch16_224", pretrained=False, num_classes=0), 224),
        }  # fmt: skip
    return {
        "rad_dino (ViT-B/14, 518)": (Dinov2Model(Dinov2Config(image_size=518, patch_size=14)), 518),
        "medgemma tower (SigLIP-so400m, 896)": (
            SiglipVisionModel(
                SiglipVisionConfig(
                    hidden_size=1152,
                    intermediate_size=4304,
                    num_hidden_layers=27,
                    num_attention_heads=16,
                    image_size=896,
                    patch_size=14,
                    vision_use_head=False,
                )
            ),
            896,
        ),  # fmt: skip
        "chexagent tower (SigLIP ViT-L/16, 512)": (
            SiglipVisionModel(
                SiglipVisionConfig(
                    hidden_size=1024,
                    intermediate_size=4096,
                    num_hidden_layers=24,
                    num_attention_heads=16,
                    image_size=512,
                    patch_size=16,
                )
            ),  # fmt: skip
            512,
        ),
        "medimageinsight (davit_huge_fl, 480)": (
            timm.create_model("davit_huge_fl", pretrained=False, num_classes=0),
            480,
        ),
        "biomedclip (ViT-B/16, 224)": (
            timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0),
            224,
        ),
    }


def pooled(net, x):
    """The image-level vector of a seed net (timm: pooled pre-logits; HF: pooler, else the
    token mean), as the loaders take it."""
    if "timm" in type(net).__module__:
        return net.forward_head(net.forward_features(x), pre_logits=True)
    out = net(pixel_values=x)
    return out.pooler_output if out.pooler_output is not None else out.last_hidden_state.mean(1)


def full_size_throughput(device: str, batch: int = 64, steps: int = 10) -> pd.DataFrame:
    """Inference images/s of each seed architecture at its real size and input resolution,
    random weights, bf16 on a GPU (float32 on a CPU), after warm-up; no decoding involved."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    nets = seed_nets()
    rows = []
    for name, (net, size) in nets.items():
        net = net.eval().to(device, dtype)
        x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
        with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=device == "cuda"):
            for _ in range(2):  # warm-up: kernels, autotuning
                net(x) if "timm" in type(net).__module__ else net(pixel_values=x)
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                net(x) if "timm" in type(net).__module__ else net(pixel_values=x)
            if device == "cuda":
                torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        params = sum(p.numel() for p in net.parameters()) / 1e6
        rows.append({"architecture": name, "params_M": round(params, 1), "batch": batch,
                     "device": device, "dtype": str(dtype).split(".")[-1],
                     "infer_img_s": round(batch * steps / secs, 1)})  # fmt: skip
        del net, x
        if device == "cuda":
            torch.cuda.empty_cache()
    return pd.DataFrame(rows)


def run(name: str, entry: dict, sample: pd.DataFrame, out: Path, device: str) -> dict:
    t0 = time.perf_counter()
    model = load_embedder(name, entry, device=device)
    load_s = time.perf_counter() - t0
    rep = extract_shard(
        sample,
        0,
        name,
        entry,
        ShardFiles(str(out / f"{name}-{device}.parquet"), str(out / f"{name}-{device}.json")),
        embedder=model,
    )
    n = rep.embedded
    return {
        "model": name,
        "device": device,
        "dtype": model.describe().get("dtype"),
        "dim": rep.dim,
        "load_s": round(load_s, 2),
        "read_img_s": round(n / rep.read_s, 1) if rep.read_s else float("inf"),
        "infer_img_s": round(n / rep.inference_s, 1),
        "bottleneck": "read" if rep.read_s > rep.inference_s else "inference",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=256, help="images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=1024, help="image side on disk (px)")
    parser.add_argument("--real", action="store_true", help="also the real cached weights")
    parser.add_argument(
        "--full-size",
        action="store_true",
        help="only time each seed architecture at full size (random weights) on the GPU",
    )
    args = parser.parse_args()
    import torch

    if args.full_size:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(
            full_size_throughput(
                device, batch=64 if device == "cuda" else 2, steps=10 if device == "cuda" else 1
            ).to_string(index=False)
        )
        return 0

    seed = yaml.safe_load((REPO / "config/models/seed.yaml").read_text())["models"]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else "none"
    print(f"# torch {torch.__version__}, GPU: {gpu}, {args.n} images of {args.size} px")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo = generate_demo(
            root / "img", n_images=args.n, seed=0, image_size=args.size, progress=False
        )
        sample = pd.DataFrame(
            {"image_id": demo["image_id"], "path": [str(root / "img" / p) for p in demo["path"]]}
        )
        sample["shard"] = 0
        entries = tiny_entries(root / "tiny", seed)
        if args.real:
            entries.update(seed)
        rows = []
        for name, entry in entries.items():
            for device in devices:
                try:
                    rows.append(run(name, entry, sample, root, device))
                except ModelConfigError as exc:  # real weights not in the cache
                    print(f"# {name}: skipped ({str(exc)[:160]})")
                    break
        table = pd.DataFrame(rows)
    if "cuda" in devices and len(table):
        cpu = table[table.device == "cpu"].set_index("model")["infer_img_s"]
        table["speedup_vs_cpu"] = [
            round(r.infer_img_s / cpu[r.model], 1) if r.device == "cuda" else 1.0
            for r in table.itertuples()
        ]
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
