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


def test_the_report_and_summary_contracts_read_back_what_they_wrote(tmp_path):
    import json

    from cxratlas.io import ReduceSummary, ShardReport

    rep = ShardReport("rad_dino", 3, images=10, embedded=8, dim=768, inference_s=2.0,
                      skipped=[{"image_id": "x", "reason": "empty file"}])  # fmt: skip
    rep.write(tmp_path / "r.json")
    assert ShardReport.read(tmp_path / "r.json") == rep
    assert json.loads((tmp_path / "r.json").read_text())["images_per_s_inference"] == 4.0
    quality = {"backend": "cpu", "n": 10, "dim": 768, "knn": {"recall": 0.97},
               "trustworthiness": 0.91}  # fmt: skip
    summary = ReduceSummary("rad_dino", 10, 768, clusters=2, noise_fraction=0.1,
                            quality=quality, memory={"matrix_mib": 1.0},
                            timings={"knn_s": 1.5, "umap_s": 2.5})  # fmt: skip
    summary.write(tmp_path / "s.json")
    flat = json.loads((tmp_path / "s.json").read_text())
    assert flat["knn"]["recall"] == 0.97 and flat["umap_s"] == 2.5 and flat["model"] == "rad_dino"
    back = ReduceSummary.read(tmp_path / "s.json")
    assert back == summary and back.trustworthiness == 0.91


def test_a_per_model_figure_names_its_model(tmp_path):
    """A map's PNG carries its model in a text chunk, read back without an imaging library;
    a PNG without one is refused by name, as a Parquet file without its footer is."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxratlas.figures import save_figure
    from cxratlas.io import by_model, model_of, png_metadata

    paths = []
    for model in ("rad_dino", "biomedclip"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        paths.append(tmp_path / f"{model}.png")
        save_figure(fig, paths[-1], metadata=png_metadata(model))
        plt.close(fig)
    assert by_model(reversed(paths)) == {"biomedclip": str(paths[1]), "rad_dino": str(paths[0])}
    fig, _ = plt.subplots()
    save_figure(fig, tmp_path / "plain.png")
    with pytest.raises(ValueError, match="plain.png: records no model name"):
        model_of(tmp_path / "plain.png")
