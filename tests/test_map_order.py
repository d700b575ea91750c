"""The map depends on the images, not on the archive's history, end to end on 300 real
radiographs (../shared/cxr-real): one fresh run, against 260 of the images first and then all
300 in another row order. The second archive's shard ledger holds the images in another order
(the 40 new ones in a shard of their own) and merges them so, and its map is aligned onto the
260-image one (`reduce.update: full`); yet the maps agree up to a similarity transform, the
clusters are the same, and so are the outlier scores and neighbours. One model (`pixels_32`,
no fitted state: the same images give the same vectors) and only the jobs its map needs.
tests/test_row_order.py checks the reduction itself on permuted rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import CXR_REAL
from scipy.spatial import procrustes
from sklearn.metrics import adjusted_rand_score
from workflow_runs import snakemake

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.real,
    pytest.mark.skipif(not (CXR_REAL / "metadata.csv").exists(), reason="no ../shared/cxr-real"),
]
MODEL = "pixels_32"
MAP = f"results/reduce/{MODEL}/reduced.parquet"


def _run(repo, workdir, rows: pd.DataFrame) -> None:
    """Write the manifest and config (one shard a run: fewest jobs), run up to MODEL's map."""
    workdir.mkdir(exist_ok=True)
    rows.to_csv(workdir / "manifest.csv", index=False)
    cfg = {
        "dataset": {"preset": "generic", "manifest": str(workdir / "manifest.csv"),
                    "image_root": str(CXR_REAL), "columns": {"path": "file"}},
        "sample": {"n": None, "stratify_by": []},
        "extract": {"shard_size": 300},
    }  # fmt: skip
    (workdir / "test.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(repo, workdir, "--until", MAP)


def _map(workdir) -> pd.DataFrame:
    t = pq.read_table(workdir / MAP)
    ids = np.asarray(t.column("image_id").to_pylist(), object)
    nb = t.column("neighbors").combine_chunks().field("ids")
    k = len(nb[0])
    neighbours = [tuple(r) for r in ids[nb.flatten().to_numpy().reshape(len(ids), k)]]
    frame = t.drop(["neighbors"]).to_pandas()
    return frame.assign(neighbours=neighbours).set_index("image_id")


def _merged_ids(workdir) -> list[str]:
    path = workdir / f"results/embeddings/{MODEL}.parquet"
    return pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist()


def test_a_fresh_archive_and_a_grown_one_give_the_same_map(repo, tmp_path):
    meta = pd.read_csv(CXR_REAL / "metadata.csv", dtype=str, keep_default_na=False)
    rows = meta.sample(frac=1, random_state=0)[["image_id", "file", "view_position"]].head(300)
    _run(repo, tmp_path / "fresh", rows)
    _run(repo, tmp_path / "grown", rows.head(260))
    _run(repo, tmp_path / "grown", rows.sample(frac=1, random_state=1))
    fresh, grown = _map(tmp_path / "fresh"), _map(tmp_path / "grown")
    # the premise: the same images, merged in another order (the ledger's history)
    assert sorted(_merged_ids(tmp_path / "fresh")) == sorted(_merged_ids(tmp_path / "grown"))
    assert _merged_ids(tmp_path / "fresh") != _merged_ids(tmp_path / "grown")
    drift = json.loads((tmp_path / f"grown/results/reduce/{MODEL}/drift.json").read_text())
    assert (drift["n_shared"], drift["n_new"]) == (260, 40)  # aligned onto the 260-image map
    # both maps list the images in one order (canonical: by a seeded hash of the id)
    assert fresh.index.tolist() == grown.index.tolist()
    xy = [m[["x", "y"]].to_numpy(np.float64) for m in (fresh, grown)]
    assert procrustes(*xy)[2] <= 1e-4
    assert adjusted_rand_score(fresh["cluster"], grown["cluster"]) == 1.0
    assert fresh["cluster"].nunique() >= 2
    assert np.array_equal(fresh["outlier"], grown["outlier"])
    assert fresh["neighbours"].tolist() == grown["neighbours"].tolist()
