"""The reader: a shard's images decoded and preprocessed in DataLoader workers.

A bad image is skipped and recorded with its reason, never fatal: each item is
(row, preprocessed array or None, error or None), and a batch carries the rows it dropped.

With `extract.jpeg_decode` on a GPU (`auto` there, or `batch`), the workers only read JPEG files'
bytes, and the main process decodes each batch's JPEGs at once with nvJPEG (`gpu_decode`), then
preprocesses them: CPU decoding of large JPEGs is what kept the GPU waiting (benchmarks/
gpu_check.py). Other files, and JPEGs nvJPEG refuses, take the PIL path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cxratlas.embed.gpu_decode import batchable, decode_bytes, is_jpeg, read_bytes
from cxratlas.ingest.imaging import ImageLoadError, ImageSource

JPEG_DECODE = ("auto", "pil", "batch")  # extract.jpeg_decode


class ImageReader(Dataset):
    """Rows of the sample -> (row, preprocessed array or None, error message or None); with
    `jpeg_bytes`, a JPEG file's row is (row, its bytes, None), decoded later as a batch."""

    def __init__(
        self, rows: pd.DataFrame, preprocess, source: ImageSource | None = None,
        jpeg_bytes: bool = False,
    ):  # fmt: skip
        self.ids = rows["image_id"].tolist()
        self.paths = rows["path"].tolist()
        self.preprocess = preprocess
        self.source = source or ImageSource()
        self.jpeg_bytes = jpeg_bytes

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        if self.jpeg_bytes and is_jpeg(self.paths[i]):  # decided here, in the workers
            (data,) = read_bytes([self.paths[i]])
            if data is not None and batchable(data):
                return i, data, None
        try:
            return i, self.preprocess(self.source.load(self.ids[i], self.paths[i])), None
        except ImageLoadError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a processor failing on one odd image must not sink the shard
            return i, None, _failed(self.paths[i], exc)


def _failed(path: str, exc: Exception) -> str:
    return f"{path}: preprocessing failed ({type(exc).__name__}: {exc})"


def collate(items):
    """(rows read, their stacked batch or None, [(row, reason)] of the ones that failed)."""
    ok = [(i, x) for i, x, err in items if err is None]
    bad = [(i, err) for i, _, err in items if err is not None]
    batch = np.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], batch, bad


def batch_decoded(loader, paths: list[str], preprocess, device: str, threads: int = 1):
    """`loader`'s batches with their JPEG bytes decoded together on `device` and preprocessed
    here by `threads` threads (PIL's resize releases the GIL), as `collate` gives them:
    (rows in order, stacked batch or None, failures)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for items in loader:
            yield _decoded_batch(items, paths, preprocess, device, pool)


def _decoded_batch(items, paths: list[str], preprocess, device: str, pool):
    raw = [(i, x) for i, x, err in items if isinstance(x, bytes)]
    done = {i: (x, err) for i, x, err in items if not isinstance(x, bytes)}
    decoded = decode_bytes([x for _, x in raw], [paths[i] for i, _ in raw], device)
    jobs = [(img, preprocess, paths[i]) for (i, _), img in zip(raw, decoded, strict=True)]
    for (i, _), result in zip(raw, pool.map(lambda a: _preprocessed(*a), jobs), strict=True):
        done[i] = result
    return collate([(i, *done[i]) for i in sorted(done)])


def _preprocessed(img, preprocess, path: str):
    """(array, None) or (None, reason) for one batch-decoded image."""
    if isinstance(img, ImageLoadError):
        return None, str(img)
    try:
        return preprocess(Image.fromarray(img, mode="L")), None
    except Exception as exc:  # as in the workers: one odd image is skipped, not fatal
        return None, _failed(path, exc)


def batch_decode_on(jpeg_decode: str, device: str, decoded_path: str | None) -> bool:
    """Whether JPEGs are decoded in batches on the model's device: `auto` on a GPU when no
    decode cache holds them already decoded; `batch` always (torchvision's libjpeg on a CPU)."""
    if jpeg_decode not in JPEG_DECODE:
        raise ValueError(f"extract.jpeg_decode must be one of {JPEG_DECODE}, not {jpeg_decode!r}")
    if jpeg_decode == "auto":
        return device == "cuda" and decoded_path is None
    return jpeg_decode == "batch" and decoded_path is None


def image_loader(
    rows: pd.DataFrame, model, decoded_path: str | None, num_workers: int,
    jpeg_decode: str = "auto",
):  # fmt: skip
    """Batches of `model.batch_size`, in row order, read from the decode cache when given;
    (rows, stacked batch or None, failures) each."""
    device = getattr(model, "device", "cpu")
    batched = batch_decode_on(jpeg_decode, device, decoded_path)
    source = ImageSource(decoded_path, getattr(model, "intensity", None))  # its 8-bit conversion
    loader = DataLoader(
        ImageReader(rows, model.preprocess, source, jpeg_bytes=batched),
        batch_size=model.batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=list if batched else collate,  # batched: `batch_decoded` stacks them
        pin_memory=getattr(model, "device", "") == "cuda",
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )
    if not batched:
        return loader
    paths = rows["path"].tolist()
    return batch_decoded(loader, paths, model.preprocess, device, threads=max(1, num_workers))
