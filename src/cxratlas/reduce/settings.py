"""The `reduce` section of the config as settings objects, built once (rules/reduce.smk's
script, tests and benchmarks all go through `ReduceSettings`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cxratlas.reduce.knn import KnnSettings

LARGE_PCA = 128  # components before the graph once the matrix is large (pca: auto)
LARGE_EPOCHS = 100  # UMAP epochs once the matrix is large (n_epochs: auto): it starts from PCA
LANDMARKS_ABOVE = 250_000  # umap.landmarks auto: past this many vectors, lay out landmarks only
LANDMARKS_MIN = 200_000  # ... at least this many of them, and at least a fifth of the vectors


@dataclass(frozen=True)
class UmapSettings:
    """How UMAP lays out a given graph. A seed makes umap-learn reproducible and
    single-threaded; None runs it in parallel."""

    min_dist: float = 0.1
    n_epochs: int | None = None
    seed: int | None = 42
    init: str = "spectral"  # spectral | pca | random (ReduceSettings.init may be auto)


@dataclass(frozen=True)
class ReduceSettings:
    """The `reduce` section of the config, built once. `seed=None` lets UMAP run in parallel
    (not reproducible)."""

    k: int = 15
    seed: int | None = 42
    min_dist: float = 0.1
    n_epochs: int | str | None = "auto"  # auto: LARGE_EPOCHS past knn.exact_max, else umap-learn's
    init: str = "auto"  # auto: pca past knn.exact_max vectors, else spectral
    landmarks: int | str | None = "auto"  # UMAP on this many; the rest placed (pipeline.py)
    cluster_space: str = "map"  # map (the 2-D layout) | umap (a low-dimensional UMAP)
    cluster_dims: int = 8
    min_cluster_size: int = 10
    min_samples: int | None = None
    pca: int | str | None = "auto"  # auto: LARGE_PCA components past knn.exact_max vectors
    knn: KnnSettings = field(default_factory=KnnSettings)
    backend: str = "auto"
    trust_sample: int = 2000
    update: str = "full"  # full | extend: how a map follows a changed sample (reduce.stability)
    extend_check_max: int = 50000  # extend: a full recomputation too, up to this many images

    def __post_init__(self):
        if self.update not in ("full", "extend"):
            raise ValueError(f"reduce.update must be 'full' or 'extend', not {self.update!r}")
        if self.cluster_space not in ("map", "umap"):
            raise ValueError(
                f"reduce.cluster.space must be 'map' or 'umap', not {self.cluster_space!r}"
            )

    @classmethod
    def from_config(cls, r: dict[str, Any]) -> ReduceSettings:
        umap, cluster = r["umap"], r["cluster"]
        return cls(
            k=r["k"], seed=r["seed"], pca=r["pca"], backend=r["backend"],
            trust_sample=r["trust_sample"], knn=KnnSettings(**r["knn"]),
            update=r.get("update", "full"), extend_check_max=r.get("extend_check_max", 50000),
            min_dist=umap["min_dist"], n_epochs=umap["n_epochs"], init=umap["init"],
            landmarks=umap.get("landmarks", "auto"),
            cluster_space=cluster["space"], cluster_dims=cluster["dims"],
            min_cluster_size=cluster["min_cluster_size"], min_samples=cluster["min_samples"],
        )  # fmt: skip

    def for_matrix(self, n: int, dim: int) -> tuple[ReduceSettings, list[str]]:
        """The settings with `auto` resolved for an n x dim matrix, and what was chosen why.
        Past `knn.exact_max` vectors 128 principal components draw the k-means cells of the
        CPU search (cells.py) with the recall target guarding it, and UMAP starts from PCA, so half
        umap-learn's 200 epochs reach the same trustworthiness (0.9981 vs 0.9982 at 100k)."""
        large = n > self.knn.exact_max
        notes, pca, init, epochs = [], self.pca, self.init, self.n_epochs
        if pca == "auto":
            pca = LARGE_PCA if large and dim > LARGE_PCA else None
            if pca:
                notes.append(f"pca {pca} (auto: {n} vectors > knn.exact_max {self.knn.exact_max})")
        if init == "auto":
            init = "pca" if large else "spectral"
            if large:
                notes.append("umap.init pca (auto: spectral initialisation is slow at this size)")
        if epochs == "auto":
            epochs = LARGE_EPOCHS if large and init == "pca" else None
            if epochs:
                notes.append(f"umap.n_epochs {epochs} (auto: UMAP starts from PCA)")
        landmarks = self._landmarks(n)
        if landmarks:
            notes.append(f"umap.landmarks {landmarks}: UMAP and HDBSCAN on {landmarks} of {n} "
                         "vectors, the rest placed from their kNN neighbours")  # fmt: skip
        return replace(self, pca=pca, init=init, n_epochs=epochs, landmarks=landmarks), notes

    def _landmarks(self, n: int) -> int | None:
        """How many vectors UMAP lays out (None: all). Past 250k vectors a seeded fifth, at
        least 200k: at 1M the map's trustworthiness was within 0.001 of the full layout's
        (docs/reduction-at-scale.md, benchmarks/scale.py), and UMAP, seeded and so
        single-threaded, took 425 s."""
        m = self.landmarks
        if m == "auto":
            m = max(LANDMARKS_MIN, n // 5) if n > LANDMARKS_ABOVE else None
        return int(m) if m and int(m) < n else None

    def but(self, **changes) -> ReduceSettings:
        """A copy with some settings changed (tests, benchmarks, sweeps)."""
        return replace(self, **changes)

    @property
    def layout(self) -> UmapSettings:
        return UmapSettings(self.min_dist, self.n_epochs, self.seed, self.init)

    @property
    def rng_seed(self) -> int:
        return 0 if self.seed is None else self.seed
