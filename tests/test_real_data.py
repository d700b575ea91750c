"""End to end on ../shared/cxr-real: 600 real radiographs and their labels (skipped if absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import CXR_REAL
from test_workflow import snakemake

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.real,
    pytest.mark.skipif(not (CXR_REAL / "metadata.csv").exists(), reason="no ../shared/cxr-real"),
]


@pytest.fixture(scope="module")
def real_run(repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("real")
    cfg = {
        "dataset": {
            "preset": "generic",
            "manifest": str(CXR_REAL / "metadata.csv"),
            "image_root": str(CXR_REAL),
            "columns": {"path": "file"},
        },
        "sample": {"n": None, "stratify_by": []},
        "extract": {"shard_size": 200},
    }
    (workdir / "test.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(repo, workdir)
    return workdir


def test_real_manifest_ingested_with_its_labels(real_run):
    manifest = pd.read_parquet(real_run / "results/manifest.parquet")
    assert len(manifest) == 600
    # counts from cxr-real/README.md
    assert (manifest["pneumonia"] == 1).sum() == 300
    assert (manifest["pneumonia"] == 0).sum() == 206
    assert manifest["pneumonia"].isna().sum() == 94
    # the source's own normalised view column (the README's table is off by 3 PA/AP)
    source = pd.read_csv(CXR_REAL / "metadata.csv", dtype=str, keep_default_na=False)
    views = manifest.set_index("image_id")["view_position"].astype(object)
    expect = source.set_index("image_id")["view_position"].replace("", None)
    assert views.loc[expect.index].fillna("").tolist() == expect.fillna("").tolist()
    assert views.value_counts().to_dict() == {"PA": 349, "AP": 167, "LATERAL": 43}


def test_real_atlas_separates_lateral_films(real_run):
    atlas = pq.read_table(real_run / "results/atlas/atlas.parquet").to_pandas()
    assert len(atlas) == 600
    lateral = (atlas["view_position"] == "LATERAL").to_numpy()
    for model in ("pixels_32", "pixels_64_pca"):
        nb = np.stack(atlas[f"neighbors_{model}"].map(lambda r: np.asarray(r["ids"][1:])))
        purity = lateral[nb[lateral]].mean()
        # a lateral film's neighbours are mostly laterals, against a 7 % base rate
        assert purity > 0.6 > 8 * lateral.mean(), (model, purity)
        assert np.isfinite(atlas[f"x_{model}"]).all()
    assert set(atlas["pneumonia"]) == {"positive", "negative", "not_mentioned"}
    assert "patient_id" not in atlas.columns
