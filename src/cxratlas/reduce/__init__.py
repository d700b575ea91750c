"""Reduction of one model's embeddings: [PCA] -> kNN graph -> UMAP map -> clusters -> outliers."""

from .knn import KnnSettings
from .pipeline import ReduceResult, reduce_embeddings

__all__ = ["KnnSettings", "ReduceResult", "reduce_embeddings"]
