"""Several datasets in one run: stacking, id collisions, and the cross-dataset mixing figures."""

import numpy as np
import pandas as pd
import pytest

from cxratlas.analysis.datasets import dataset_mixing, same_dataset_fraction
from cxratlas.ingest.datasets import dataset_specs, ingest_datasets
from cxratlas.ingest.manifest import ManifestError


def _dataset(tmp_path, name, ids, labels):
    from PIL import Image

    folder = tmp_path / name
    folder.mkdir()
    for i in ids:
        Image.new("L", (8, 8), 40).save(folder / f"{i}.png")
    df = pd.DataFrame({"image_id": ids, "path": [f"{i}.png" for i in ids], **labels})
    df.to_csv(folder / "m.csv", index=False)
    return {"name": name, "preset": "generic", "manifest": str(folder / "m.csv"),
            "image_root": str(folder)}  # fmt: skip


def test_datasets_stack_with_a_dataset_column_and_keep_label_types(tmp_path):
    a = _dataset(tmp_path, "site_a", ["a1", "a2"], {"Pneumonia": ["1", "0"]})
    b = _dataset(tmp_path, "site_b", ["b1"], {"Edema": ["-1"]})
    manifest, dropped = ingest_datasets([a, b])
    assert manifest["dataset"].tolist() == ["site_a", "site_a", "site_b"]
    assert str(manifest["pneumonia"].dtype) == "Int8" and str(manifest["edema"].dtype) == "Int8"
    assert manifest["pneumonia"].isna().tolist() == [False, False, True]
    assert manifest["edema"].tolist()[2] == -1
    assert dropped.empty


def test_shared_ids_across_datasets_are_named_and_a_prefix_fixes_them(tmp_path):
    a = _dataset(tmp_path, "site_a", ["x1", "x2"], {})
    b = _dataset(tmp_path, "site_b", ["x2"], {})
    with pytest.raises(ManifestError, match=r"'x2' appears in datasets \['site_a', 'site_b'\]"):
        ingest_datasets([a, b])
    manifest, _ = ingest_datasets([a, {**b, "id_prefix": "b:"}])
    assert manifest["image_id"].tolist() == ["x1", "x2", "b:x2"]


def test_dataset_specs_name_and_check(tmp_path):
    cfg = {"dataset": {"preset": "demo"}, "datasets": [{"preset": "generic", "manifest": "m.csv"}]}
    specs = dataset_specs(cfg, "d")
    assert [s["name"] for s in specs] == ["demo", "generic"]
    assert specs[0]["manifest"] == "d/manifest.csv" and specs[0]["image_root"] == "d"
    cfg["datasets"].append({"preset": "generic", "manifest": "n.csv"})
    with pytest.raises(ValueError, match="repeats"):
        dataset_specs(cfg)
    with pytest.raises(ValueError, match=r"datasets\[0\] \(b\): `manifest` is required"):
        dataset_specs(
            {"dataset": {"preset": "demo"}, "datasets": [{"name": "b", "preset": "generic"}]}
        )


def test_same_dataset_fraction_by_hand():
    # point 0's neighbours: itself, 1 (same), 2 (other), -1 (missing) -> 1/2
    nb = np.array([[0, 1, 2, -1], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]])
    ds = np.array(["a", "a", "b", "b"])
    assert same_dataset_fraction(nb, ds).tolist() == [0.5, 1 / 3, 1 / 3, 1 / 3]


def test_mixing_is_one_when_apart_and_zero_when_mixed():
    rng = np.random.default_rng(0)
    n, k = 400, 10
    ds = np.repeat(["a", "b"], n // 2)
    apart = np.stack([rng.choice(np.flatnonzero(ds == ds[i]), k) for i in range(n)])
    mixed = rng.integers(0, n, (n, k))
    cluster = (ds == "b").astype(int)
    clusters, mix = dataset_mixing("m", apart, cluster, ds)
    row = mix.set_index("dataset").loc["all"]
    assert row["separation"] == pytest.approx(1.0) and row["ari_cluster_dataset"] == 1.0
    assert set(clusters["share_in_cluster"]) == {1.0} and len(clusters) == 2
    _, mix = dataset_mixing("m", mixed, rng.integers(0, 3, n), ds)
    assert abs(mix.set_index("dataset").loc["all", "separation"]) < 0.06
    assert mix.set_index("dataset").loc["a", "expected_if_mixed"] == pytest.approx(199 / 399)
