"""The contract every loader kind (adapter) fulfils."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from PIL import Image

from cxratlas.ingest.intensity import Intensity, IntensityError
from cxratlas.ingest.sample import RANK

log = logging.getLogger(__name__)


class ModelConfigError(ValueError):
    """A model entry that cannot be used; the message names the model and the key."""


def intensity_of(name: str, entry: dict[str, Any]) -> Intensity:
    """The entry's `intensity:` block (the display conversion where it has none)."""
    try:
        return Intensity.from_entry(name, entry.get("intensity"))
    except IntensityError as exc:
        raise ModelConfigError(str(exc)) from None


class Embedder(ABC):
    """Turns 8-bit grayscale images into float32 vectors.

    `preprocess` runs in DataLoader workers (keep it picklable and model-free); `embed` runs the
    model on a stacked batch of what `preprocess` returned.
    """

    kind: str = ""
    # The kind's contract, asked by the rules, extraction and ingest (none tests a kind's name):
    reads_images: bool = True  # False: vectors are looked up (`lookup`), no image is decoded

    @staticmethod
    def needs_fit(entry: dict[str, Any]) -> bool:
        """Whether the entry has a fit step on the shared sample before its shards run."""
        return False

    @staticmethod
    def sample_columns(entry: dict[str, Any]) -> tuple[str, ...]:
        """Manifest columns beyond id and path that the entry's shards read from the sample."""
        return ()

    @staticmethod
    def fit_images(entry: dict[str, Any]) -> int:
        """How many sample images the fit step reads (at most)."""
        return 0

    @classmethod
    def fit_rows(cls, ledger, entry: dict[str, Any]):
        """The sample ledger's rows the fit step reads, in the order it reads them: the
        `fit_images` lowest sample ranks (a hash of the image id keyed by `sample.seed`). Chosen
        by id, never by position: the ledger's row order is the archive's history (shards in
        the order images arrived), and the same images must fit the same state."""
        ranked = ledger.sort_values([RANK, "image_id"], kind="stable")
        return ranked.head(cls.fit_images(entry))

    @classmethod
    def fit(cls, name: str, entry: dict[str, Any], images, seed: int, out_path) -> None:
        """Fit the entry's data-dependent state on `images` and save it to `out_path`."""
        raise NotImplementedError(f"kind {cls.kind!r} has no fit step")

    def lookup(self, rows):
        """(ids, vectors, skipped, missing) for the sample rows, for a kind that reads no image."""
        raise NotImplementedError(f"kind {self.kind!r} reads images")

    def __init__(self, name: str, entry: dict[str, Any]):
        self.name = name
        self.entry = entry
        self.intensity = intensity_of(name, entry)  # how its films become 8 bits

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
            **({"dtype": self.dtype_name} if hasattr(self, "dtype_name") else {}),
        }


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("extract.device is 'cuda' but torch sees no CUDA device on this node")
    return device


BF16_CAPABILITY = (8, 0)  # Ampere: native bfloat16 tensor cores; older GPUs emulate it slowly


def gpu_dtype(requested: str, capability: tuple[int, int]) -> str:
    """The dtype an entry runs in on a CUDA device of compute `capability`: bfloat16 only from
    8.0 on; asked on an older GPU it runs float32 (the authors' references are float32, and
    float16's narrower range was never measured on these models). float16 and float32 run as
    asked."""
    if requested == "bfloat16" and tuple(capability) < BF16_CAPABILITY:
        return "float32"
    return requested


def device_description(device: str) -> str:
    """The device a shard ran on, for its metadata: the GPU's name and compute capability."""
    import torch

    if device != "cuda":
        return device
    major, minor = torch.cuda.get_device_capability()
    return f"cuda: {torch.cuda.get_device_name()} (sm_{major}{minor})"


class TorchEmbedder(Embedder):
    """A PyTorch model on one device: 16-bit weights and autocast on a GPU that supports the
    entry's `dtype` (`gpu_dtype`), float32 on a CPU. The dtype used, the one asked for and the
    device go into every shard's metadata (`describe`).

    Subclasses load `self.model`, then call `finish_setup()`, and implement `forward`.
    """

    channels_last = False  # convolutional trunks gain from NHWC on tensor cores

    def __init__(self, name: str, entry: dict[str, Any], device: str = "auto"):
        super().__init__(name, entry)
        import torch

        self.device = resolve_device(device)
        self.dtype_requested = entry.get("dtype", "bfloat16")
        self.dtype_name = (
            gpu_dtype(self.dtype_requested, torch.cuda.get_device_capability())
            if self.device == "cuda"
            else "float32"
        )
        if self.dtype_name != self.dtype_requested and self.device == "cuda":
            log.warning("model %r: %s asked, but %s has no native bfloat16: running %s",
                        name, self.dtype_requested, device_description(self.device),
                        self.dtype_name)  # fmt: skip
        self.dtype = getattr(torch, self.dtype_name)
        self._dim: int | None = None

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "dtype_requested": self.dtype_requested,
            "device": device_description(self.device),
        }

    def finish_setup(self) -> None:
        import torch

        self.model.eval().to(self.device, self.dtype)
        if self.channels_last and self.device == "cuda":
            self.model.to(memory_format=torch.channels_last)

    @abstractmethod
    def forward(self, x: Any) -> Any:
        """Image-level embeddings (a 2-D tensor) for a normalised batch tensor."""

    def embed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.as_tensor(np.asarray(batch, np.float32))
        if self.device == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        x = x.to(self.dtype)
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=self.dtype,
                           enabled=self.device == "cuda" and self.dtype_name != "float32"),
        ):  # fmt: skip
            vec = self.forward(x)
        return vec.float().cpu().numpy()

    @property
    def dim(self) -> int:
        if self._dim is None:  # one probe image through the real path
            self._dim = int(self.embed(self.preprocess(Image.new("L", (64, 64)))[None]).shape[1])
        return self._dim
