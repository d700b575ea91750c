"""Offline baseline: downsampled, per-image standardised pixels, optionally projected by PCA.

It needs no weights, so the demo and the cross-model parts run anywhere. The PCA is fitted once
per ledger (its own Snakemake job, `fit_model`) so every shard uses the same basis, on the
`pca_fit_n` images of the shared sample with the lowest sample ranks (a seeded hash of the image
id): chosen by id, not by their position in the ledger, whose order is the archive's history.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image
from sklearn.decomposition import PCA

from cxratlas.embed.models.base import Embedder, ModelConfigError

log = logging.getLogger(__name__)


def pixel_vector(img: Image.Image, size: int) -> np.ndarray:
    small = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), np.float32).ravel()
    std = small.std()
    return (small - small.mean()) / (std if std > 1e-6 else 1.0)


class PixelEmbedder(Embedder):
    kind = "pixels"

    def __init__(
        self, name: str, entry: dict[str, Any], state_path: str | None = None, device: str = "auto"
    ):  # pixels run on the CPU whatever the node has
        super().__init__(name, entry)
        self.size = int(entry.get("image_size", 32))
        self.pca_dim = entry.get("pca")
        self.mean = self.components = None
        if self.pca_dim:
            if state_path is None or not os.path.exists(state_path):
                raise ModelConfigError(
                    f"model {name!r}: 'pca' is set but no fitted state was given"
                )
            state = np.load(state_path)
            self.mean, self.components = state["mean"], state["components"]

    @staticmethod
    def needs_fit(entry: dict[str, Any]) -> bool:
        return bool(entry.get("pca"))

    @staticmethod
    def fit_images(entry: dict[str, Any]) -> int:
        return int(entry.get("pca_fit_n", 2000))

    @classmethod
    def fit(
        cls,
        name: str,
        entry: dict[str, Any],
        images: Iterable[Image.Image],
        seed: int,
        out_path: str | os.PathLike,
    ) -> None:
        """Fit the PCA basis on `images` and save it as npz (mean, components)."""
        from cxratlas.io import atomic_path

        size = int(entry.get("image_size", 32))
        vectors = [pixel_vector(img, size) for img in images]
        if len(vectors) < 2:
            raise ModelConfigError(
                f"model {name!r}: {len(vectors)} readable image(s) to fit the PCA on; it needs 2"
            )
        X = np.stack(vectors)
        requested = int(entry["pca"])
        # a small sample cannot give more components than images: fit what it allows, say so
        n_comp = min(requested, min(X.shape))
        if n_comp < requested:
            log.warning(
                "model %s: pca=%d but the sample gives %d fit images; using %d components",
                name, requested, len(X), n_comp,
            )  # fmt: skip
        pca = PCA(n_components=n_comp, random_state=seed).fit(X)
        with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                mean=pca.mean_.astype(np.float32),
                components=pca.components_.astype(np.float32),
                explained_variance_ratio=pca.explained_variance_ratio_,
                requested=np.int64(requested),
                fit_images=np.int64(len(X)),
            )

    def preprocess(self, img: Image.Image) -> np.ndarray:
        return pixel_vector(img, self.size)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """The projection, one image at a time in effect: BLAS multiplies a batch of 1-3 rows
        with another kernel than a larger one (rounded otherwise), so an image's vector
        would depend on the images that happen to share its batch, which the shard ledger's
        history decides; the map of the same images then moved (ARI 0.16 between the two maps
        of 600 real images, before and after a prune and a re-add). numpy's own einsum loop sums
        each row alike whatever the batch (0.06 s a 1,000 images, against 0.008 s)."""
        batch = np.asarray(batch, np.float32)
        if self.components is not None:
            return np.einsum("ij,kj->ik", batch - self.mean, self.components, optimize=False)
        return batch

    @property
    def dim(self) -> int:
        if self.components is not None:  # what the fit used, which a small sample may cap
            return int(self.components.shape[0])
        return self.size * self.size
