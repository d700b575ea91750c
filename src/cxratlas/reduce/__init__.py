"""Reduction of one model's embeddings: kNN graph -> UMAP map -> clusters -> outlier scores."""

from .pipeline import ReduceResult, reduce_embeddings

__all__ = ["ReduceResult", "reduce_embeddings"]
