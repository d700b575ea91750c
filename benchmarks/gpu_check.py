"""One prepared GPU check: run it on the first GPU machine lent, read the one table it prints.

    python benchmarks/gpu_check.py            # on a GPU node (fits 8 minutes on one H200)
    python benchmarks/gpu_check.py --smoke    # tiny sizes on the CPU: checks the script runs

Rows (each a named measurement against a named baseline run in the same process):
1. the five seed architectures at full size and input resolution, random weights, bf16:
   inference images/s (benchmarks/seed_models.full_size_throughput);
2. reading a batch of 1024-px JPEG radiographs: PIL on one CPU core and nvJPEG batch decode
   (`embed.gpu_decode`), per batch of 64, against each architecture's inference per batch;
3. torch exact kNN (`reduce.torch_knn`) at 1M x 768 (float32, L2-normalised, clustered):
   seconds, and recall@15 of 1,000 queries against exact search on the CPU;
4. the reduce step end to end at 50k x 768 with `reduce.backend: gpu`: cuML where importable,
   else torch alone (torch kNN, PCA and UMAP layout on the GPU, HDBSCAN on the CPU), against the
   CPU backend on the same matrix: seconds and trustworthiness;
5. the torch UMAP layout at 1M on row 3's graph: seconds and trustworthiness;
6. bfloat16 against float32 on each seed architecture (random weights, phantom films): the
   cosine of each image's vector in the dtype the loaders would pick on this GPU against the
   float32 one (`embed.models.base.gpu_dtype`), min and median over the images.
Needs torch with CUDA; FAISS, RAPIDS and umap-learn are optional (rows say what was used).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

ROWS: list[tuple[str, str, str]] = []  # (check, measurement, value)


def row(check: str, what: str, value: str) -> None:
    ROWS.append((check, what, value))
    print(f"{check:<28} {what:<58} {value}", flush=True)


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, d)).astype(np.float32)
    X = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        m = min(n, s + 100_000) - s
        X[s : s + m] = centres[rng.integers(0, 200, m)] + 0.5 * rng.normal(size=(m, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def seed_models(device: str, smoke: bool) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from seed_models import full_size_throughput

    if smoke:  # five full-size networks on a CPU take minutes: not what a smoke run checks
        row("1 seed model, full size", "skipped with --smoke", "-")
        return {}
    table = full_size_throughput(device, batch=64, steps=10)
    per_batch = {}
    for r in table.itertuples():
        row("1 seed model, full size", f"{r.architecture} inference", f"{r.infer_img_s} img/s")
        per_batch[r.architecture] = 64 / r.infer_img_s
    return per_batch


def decode(device: str, smoke: bool, per_batch: dict[str, float], tmp: Path) -> None:
    from PIL import Image

    from cxratlas.demo.phantom import VENDORS, draw_phantom
    from cxratlas.embed.gpu_decode import decode_gray8
    from cxratlas.ingest.imaging import load_gray8

    size, n = (256, 8) if smoke else (1024, 64)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = draw_phantom("PA", VENDORS[i % 3], i % 2 == 0, False, False, rng, size)
        paths.append(str(tmp / f"{i}.jpg"))
        Image.fromarray(img).save(paths[-1], quality=90)
    t0 = time.perf_counter()
    ref = [np.asarray(load_gray8(p)) for p in paths]
    cpu_s = time.perf_counter() - t0
    decode_gray8(paths[:4], device)  # warm-up (nvJPEG handles, CUDA context)
    t0 = time.perf_counter()
    out = decode_gray8(paths, device)
    gpu_s = time.perf_counter() - t0
    worst = max(
        int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(out, ref, strict=True)
    )
    row("2 read vs inference", f"PIL decode, 1 core, batch of {n} x {size}px", f"{cpu_s:.3f} s")
    row("2 read vs inference", f"{device} batch decode, same batch", f"{gpu_s:.3f} s "
        f"({cpu_s / gpu_s:.1f}x PIL; max diff {worst} grey levels)")  # fmt: skip
    for model, secs in per_batch.items():
        row("2 read vs inference", f"{model} inference per batch of 64", f"{secs:.3f} s")


def knn(device: str, smoke: bool):
    """Row 3; returns the matrix and its graph for row 5."""
    from cxratlas.reduce.torch_knn import torch_exact_knn

    n = 8000 if smoke else 1_000_000
    X = clustered(n, 768)
    t0 = time.perf_counter()
    sims, idx = torch_exact_knn(X, X, 15, gpu=device == "cuda")
    secs = time.perf_counter() - t0
    q = np.random.default_rng(1).choice(n, 1000, replace=False)
    _, ref = torch_exact_knn(X[q], X, 15, gpu=False)  # exact float32 on the CPU
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(idx[q], ref, strict=True)])
    row("3 torch exact kNN", f"{n} x 768, k 15, on {device}", f"{secs:.1f} s, recall {recall:.4f}")
    from cxratlas.reduce.neighbours import self_first

    dist = np.clip(1.0 - sims, 0.0, 2.0)
    self_first(idx, dist)
    return X, idx, dist


def reduce_step(device: str, smoke: bool) -> None:
    """Row 4: the GPU backend `reduce.backend: gpu` resolves to here (cuML, else torch alone)
    against the CPU backend on the same matrix."""
    from cxratlas.reduce import ReduceSettings, reduce_embeddings
    from cxratlas.reduce.knn import KnnSettings
    from cxratlas.reduce.pipeline import trustworthiness_sample
    from cxratlas.reduce.torch_backend import TorchBackend

    n = 2000 if smoke else 50_000
    X = clustered(n, 768, seed=2)
    s = ReduceSettings(seed=None, knn=KnnSettings(method="exact")).for_matrix(n, 768)[0]
    t0 = time.perf_counter()
    cpu = reduce_embeddings(X.copy(), s.but(backend="cpu"))
    cpu_s = time.perf_counter() - t0
    t_cpu = trustworthiness_sample(X, cpu.xy, 15, 2000)
    row("4 reduce end to end", f"CPU backend, {n} x 768", f"{cpu_s:.1f} s, trust {t_cpu:.4f}")
    seeded = s.but(seed=42)  # the torch layout is reproducible at no cost: seed it
    t0 = time.perf_counter()
    if device == "cuda":
        out = reduce_embeddings(X.copy(), seeded.but(backend="gpu"))
    else:  # --smoke: the torch backend on the CPU build
        out = reduce_embeddings(X.copy(), seeded, backend=TorchBackend("cpu"))
    secs = time.perf_counter() - t0
    t = trustworthiness_sample(X, out.xy, 15, 2000)
    what = f"GPU backend ({out.quality['engine']}) on {device}"
    row("4 reduce end to end", f"{what}, {n} x 768", f"{secs:.1f} s ({cpu_s / secs:.2f}x CPU), "
        f"trust {t:.4f} ({t - t_cpu:+.4f})")  # fmt: skip


def layout_1m(device: str, X: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
    """Row 5: the torch UMAP layout on row 3's graph (fuzzy graph on the CPU, 100 epochs from
    PCA on the device, as `reduce` lays out a large matrix), against nothing: no CPU baseline
    fits this check's 8 minutes (umap-learn took 425 s at 1M on 2 cores,
    docs/reduction-at-scale.md)."""
    from cxratlas.reduce.pipeline import trustworthiness_sample
    from cxratlas.reduce.settings import LARGE_EPOCHS, UmapSettings
    from cxratlas.reduce.torch_umap import umap_layout

    t0 = time.perf_counter()
    xy = umap_layout(X, idx, dist, 2, UmapSettings(n_epochs=LARGE_EPOCHS, init="pca"), device)
    secs = time.perf_counter() - t0
    t = trustworthiness_sample(X, xy, 15, 2000)
    row("5 torch UMAP layout", f"{len(X)} points, {LARGE_EPOCHS} epochs, on {device}",
        f"{secs:.1f} s, trust {t:.4f}")  # fmt: skip


def dtype_drift(device: str, smoke: bool) -> None:
    """Row 6: each seed class's image vector in the run's dtype against float32, the same
    weights and films, under the autocast the embedders use (`TorchEmbedder.embed`)."""
    import torch

    from cxratlas.demo.phantom import VENDORS, draw_phantom
    from cxratlas.embed.models.base import gpu_dtype

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from seed_models import pooled, seed_nets

    cap = torch.cuda.get_device_capability() if device == "cuda" else (8, 0)
    dtype = getattr(torch, gpu_dtype("bfloat16", cap))
    rng = np.random.default_rng(3)
    films = [draw_phantom("PA", VENDORS[i % 3], i % 2 == 0, False, False, rng, 256)
             for i in range(4 if smoke else 16)]  # fmt: skip
    for name, (net, size) in seed_nets(small=smoke).items():
        x = torch.stack([torch.nn.functional.interpolate(
            torch.as_tensor(f, dtype=torch.float32)[None, None] / 127.5 - 1, size=(size, size),
            mode="bilinear").expand(1, 3, size, size)[0] for f in films]).to(device)  # fmt: skip
        net = net.eval().to(device)
        with torch.inference_mode():
            ref = pooled(net, x).float()
            low = net.to(dtype)
            with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
                got = pooled(low, x.to(dtype)).float()
        cos = torch.nn.functional.cosine_similarity(ref, got, dim=1).cpu().numpy()
        row("6 bf16 vs fp32", f"{name}, {str(dtype)[6:]} on {device}",
            f"cosine min {cos.min():.5f}, median {np.median(cos):.5f}")  # fmt: skip
        del net, low
        if device == "cuda":
            torch.cuda.empty_cache()


def main() -> int:
    import tempfile

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, CPU allowed")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        print("no CUDA device: run with --smoke to check the script on a CPU", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"GPU check on {name}, torch {torch.__version__}\n")
    with tempfile.TemporaryDirectory() as tmp:
        per_batch = seed_models(device, args.smoke)
        decode(device, args.smoke, per_batch, Path(tmp))
        X, idx, dist = knn(device, args.smoke)
        reduce_step(device, args.smoke)
        layout_1m(device, X, idx, dist)
        dtype_drift(device, args.smoke)
    buf = io.StringIO()
    buf.write("\n| check | measurement | value |\n|---|---|---|\n")
    for check, what, value in ROWS:
        buf.write(f"| {check} | {what} | {value} |\n")
    print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
