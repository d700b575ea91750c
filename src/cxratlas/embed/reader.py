"""The reader: a shard's images decoded and preprocessed in DataLoader workers.

A bad image is skipped and recorded with its reason, never fatal: each item is
(row, preprocessed array or None, error or None), and a batch carries the rows it dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, Dataset

from cxratlas.ingest.imaging import ImageLoadError, ImageSource


class ImageReader(Dataset):
    """Rows of the sample -> (row, preprocessed array or None, error message or None)."""

    def __init__(self, rows: pd.DataFrame, preprocess, source: ImageSource | None = None):
        self.ids = rows["image_id"].tolist()
        self.paths = rows["path"].tolist()
        self.preprocess = preprocess
        self.source = source or ImageSource()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        try:
            return i, self.preprocess(self.source.load(self.ids[i], self.paths[i])), None
        except ImageLoadError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a processor failing on one odd image must not sink the shard
            return i, None, f"{self.paths[i]}: preprocessing failed ({type(exc).__name__}: {exc})"


def collate(items):
    """(rows read, their stacked batch or None, [(row, reason)] of the ones that failed)."""
    ok = [(i, x) for i, x, err in items if err is None]
    bad = [(i, err) for i, _, err in items if err is not None]
    batch = np.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], batch, bad


def image_loader(
    rows: pd.DataFrame, model, decoded_path: str | None, num_workers: int
) -> DataLoader:
    """Batches of `model.batch_size`, in row order, read from the decode cache when given."""
    return DataLoader(
        ImageReader(rows, model.preprocess, ImageSource(decoded_path)),
        batch_size=model.batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=getattr(model, "device", "") == "cuda",
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )
