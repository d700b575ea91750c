"""Embedding: the model registry, the decode cache, and sharded extraction."""
