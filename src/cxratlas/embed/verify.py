"""Golden vectors: each configured model's embedding of a few fixed films, in float32 and in the
run's dtype, written once on a machine with the weights and compared with every later run
(`cxr-atlas verify-models`). A loader, a library upgrade or a changed checkpoint that moves the
vectors shows up as a cosine below the threshold, per model and image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxratlas.embed.models import load_embedder, reads_images
from cxratlas.embed.reuse import entry_sha

MIN_COSINE = 0.99


@dataclass(frozen=True)
class Films:
    """The fixed films every model embeds: (id, 8-bit-or-more file path) pairs."""

    paths: dict[str, Path]

    @classmethod
    def from_folder(cls, folder: Path) -> Films:
        files = sorted(p for p in Path(folder).iterdir() if p.is_file())
        if not files:
            raise FileNotFoundError(f"{folder}: no image files to verify the models on")
        return cls({p.stem: p for p in files})

    @classmethod
    def phantoms(cls, folder: Path, n: int = 4) -> Films:
        """`n` phantom films (seeded, so the same every time) written as PNGs into `folder`:
        the stand-in where no real public-domain radiographs are given."""
        from cxratlas.demo.phantom import VENDORS, draw_phantom

        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(20261207)
        paths = {}
        for i in range(n):
            film = draw_phantom("PA" if i % 2 else "AP", VENDORS[i % len(VENDORS)], i % 2 == 0,
                                i % 3 == 0, i == 1, rng, 512)  # fmt: skip
            paths[f"phantom_{i}"] = folder / f"phantom_{i}.png"
            Image.fromarray(film).save(paths[f"phantom_{i}"])
        return cls(paths)

    def sha256(self) -> dict[str, str]:
        return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in self.paths.items()}


def _embed(name: str, entry: dict[str, Any], films: Films, device: str) -> tuple[np.ndarray, dict]:
    model = load_embedder(name, entry, device=device)
    images = [_load(model, p) for p in films.paths.values()]
    vectors = model.embed(np.stack([model.preprocess(img) for img in images]))
    return vectors.astype(np.float32), model.describe()


def _load(model, path: Path) -> Image.Image:
    from cxratlas.ingest.imaging import load_gray8

    return load_gray8(path, model.intensity)


def golden_vectors(name: str, entry: dict[str, Any], films: Films, device: str) -> dict:
    """The model's vectors of `films` in float32 and in the run's dtype on `device`."""
    fp32, _ = _embed(name, {**entry, "dtype": "float32"}, films, device)
    run, meta = _embed(name, entry, films, device)
    return {"fp32": fp32, "run": run, "meta": meta}


def write_golden(out: Path, name: str, entry: dict[str, Any], films: Films, result: dict) -> Path:
    """`<out>/<name>.npz`: ids, both matrices, and what made them (entry sha, dtype, device,
    the films' sha256) as JSON."""
    out.mkdir(parents=True, exist_ok=True)
    about = {
        "model": name,
        "entry_sha": entry_sha(entry),
        "dtype": result["meta"].get("dtype"),
        "device": result["meta"].get("device"),
        "films_sha256": films.sha256(),
    }
    path = out / f"{name}.npz"
    np.savez(path, ids=np.array(list(films.paths)), fp32=result["fp32"], run=result["run"],
             about=np.array(json.dumps(about)))  # fmt: skip
    return path


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def compare(golden: Path, name: str, films: Films, result: dict) -> dict[str, Any]:
    """Cosines of this run's vectors against the golden file's, per image: float32 against
    float32, the run's dtype against golden float32, and this run's dtype against its own
    float32 (the drift of the reduced precision alone)."""
    with np.load(golden / f"{name}.npz") as g:
        ids = [str(i) for i in g["ids"]]
        about = json.loads(str(g["about"]))
        if ids != list(films.paths) or about["films_sha256"] != films.sha256():
            raise ValueError(
                f"{golden / f'{name}.npz'}: made from other films ({ids}); verify on the same "
                "images (--images) the golden vectors were written from"
            )
        fp32 = cosines(result["fp32"], g["fp32"])
        run = cosines(result["run"], g["fp32"])
    return {
        "model": name,
        "fp32_vs_golden": float(fp32.min()),
        "run_vs_golden": float(run.min()),
        "run_vs_fp32": float(cosines(result["run"], result["fp32"]).min()),
        "dtype": result["meta"].get("dtype"),
        "golden_dtype": about["dtype"],
    }


def verify_models(models: dict[str, dict[str, Any]], films: Films, out: Path, device: str = "auto",
                  against: Path | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Embed `films` with every image-reading model; write golden files to `out`, and compare
    them with `against` when given. Returns one row per model (its minimum cosines)."""
    rows = []
    for name, entry in models.items():
        if not reads_images(name, entry):
            continue  # precomputed vectors have no loader to verify
        result = golden_vectors(name, entry, films, device)
        write_golden(out, name, entry, films, result)
        row = {"model": name, "dtype": result["meta"].get("dtype"),
               "run_vs_fp32": float(cosines(result["run"], result["fp32"]).min())}  # fmt: skip
        if against is not None:
            row = compare(against, name, films, result)
            row["ok"] = min(row["fp32_vs_golden"], row["run_vs_golden"]) >= MIN_COSINE
        rows.append(row)
    return rows
