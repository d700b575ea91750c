"""Files say which model they hold, and inputs are paired with models by that name."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cxratlas.io import by_model, embedding_table, model_of, reduced_table, write_parquet
from cxratlas.reduce import ReduceResult


def _result(n: int) -> ReduceResult:
    idx = np.tile(np.arange(3), (n, 1))
    return ReduceResult(
        xy=np.zeros((n, 2), np.float32), knn_idx=idx, knn_dist=np.zeros((n, 3), np.float32),
        cluster=np.zeros(n, np.int32), outlier=np.zeros(n, np.float32),
        pagerank=np.full(n, 1 / n, np.float32),
    )  # fmt: skip


def test_files_are_paired_by_the_model_they_record_not_by_position(tmp_path):
    ids = ["a", "b", "c"]
    write_parquet(reduced_table(ids, _result(3), "rad_dino"), tmp_path / "x.parquet")
    write_parquet(reduced_table(ids, _result(3), "biomedclip"), tmp_path / "y.parquet")
    vectors = np.zeros((3, 4), np.float32)
    write_parquet(embedding_table(ids, vectors, {"model": "medgemma"}), tmp_path / "e.parquet")
    paired = by_model([tmp_path / "y.parquet", tmp_path / "x.parquet"])
    assert paired == {"biomedclip": str(tmp_path / "y.parquet"),
                      "rad_dino": str(tmp_path / "x.parquet")}  # fmt: skip
    assert model_of(tmp_path / "e.parquet") == "medgemma"
    with pytest.raises(ValueError, match="both hold model 'rad_dino'"):
        by_model([tmp_path / "x.parquet", tmp_path / "x.parquet"])
    write_parquet(pa.table({"image_id": ids}), tmp_path / "anonymous.parquet")
    with pytest.raises(ValueError, match="anonymous.parquet: records no model name"):
        model_of(tmp_path / "anonymous.parquet")
