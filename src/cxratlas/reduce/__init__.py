"""Reduction of one model's embeddings: [PCA] -> kNN graph -> UMAP map -> clusters -> outliers."""

from cxratlas.reduce.knn import KnnSettings
from cxratlas.reduce.pipeline import ReduceResult, reduce_embeddings
from cxratlas.reduce.settings import ReduceSettings

__all__ = ["KnnSettings", "ReduceResult", "ReduceSettings", "reduce_embeddings"]
