"""The contract every loader kind (adapter) fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from PIL import Image


class ModelConfigError(ValueError):
    """A model entry that cannot be used; the message names the model and the key."""


class Embedder(ABC):
    """Turns 8-bit grayscale images into float32 vectors.

    `preprocess` runs in DataLoader workers (keep it picklable and model-free); `embed` runs the
    model on a stacked batch of what `preprocess` returned.
    """

    kind: str = ""

    def __init__(self, name: str, entry: dict[str, Any]):
        self.name = name
        self.entry = entry

    @property
    def batch_size(self) -> int:
        return int(self.entry.get("batch_size", 32))

    @abstractmethod
    def preprocess(self, img: Image.Image) -> np.ndarray: ...

    @abstractmethod
    def embed(self, batch: np.ndarray) -> np.ndarray: ...

    @property
    @abstractmethod
    def dim(self) -> int: ...

    def describe(self) -> dict[str, Any]:
        """What goes into each shard's metadata, so a file says which model made it."""
        return {
            "model": self.name,
            "kind": self.kind,
            "dim": self.dim,
            **{k: v for k, v in self.entry.items() if k != "kind"},
        }
