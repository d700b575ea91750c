"""End to end on ../shared/cxr-real: 600 real radiographs and their labels (skipped if absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import CXR_REAL
from workflow_runs import snakemake

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
            "keep_columns": ["source_dataset"],
        },
        "sample": {"n": None, "stratify_by": []},
        "extract": {"shard_size": 200},
        "analysis": {"shortcuts": {"site": "source_dataset"}},
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


def test_real_pneumonia_is_flagged_as_a_collection_shortcut(real_run):
    """Pneumonia is 290 of 309 COVID-collection images and 8 of 171 NIH ones: a probe that finds
    the collection finds "pneumonia". The audit must say so."""
    out = real_run / "results/analysis/shortcuts"
    table = pd.read_csv(out / "confounding.tsv", sep="\t")
    pneumonia = table[table["finding"] == "pneumonia"]
    assert len(pneumonia) == 2 and pneumonia["flagged"].all(), pneumonia
    assert (pneumonia["metadata_auroc"] > 0.8).all()  # the collection alone predicts it
    assert (pneumonia["within_site_auroc"] < pneumonia["pooled_auroc"]).all()
    # a probe at chance has nothing to explain: not flagged, and the reason says why
    chance = table[table["pooled_ci_low"] <= 0.5]
    assert len(chance) and not chance["flagged"].any()
    assert chance["reason"].str.contains("not above chance").all()
    attrs = pd.read_parquet(out / "attributes.parquet").set_index(["model", "attribute"])
    for model in ("pixels_32", "pixels_64_pca"):
        assert attrs.at[(model, "source_dataset"), "value"] > 0.7  # the collection is decoded
        assert abs(attrs.at[(model, "source_dataset"), "control"] - 0.5) < 0.1
