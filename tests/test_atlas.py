import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cxratlas.atlas.state import atlas_state
from cxratlas.atlas.table import build_atlas
from cxratlas.atlas.thumbnails import make_thumbnails
from cxratlas.ingest.privacy import hash_id, hash_ids
from cxratlas.io import (
    ManifestColumns,
    atlas_view_files,
    reduced_table,
    write_frame,
    write_manifest,
    write_parquet,
)
from cxratlas.reduce import ReduceResult


def _result(n, k, seed):
    rng = np.random.default_rng(seed)
    idx = np.stack(
        [
            np.concatenate([[i], rng.choice(np.delete(np.arange(n), i), k - 1, False)])
            for i in range(n)
        ]
    )
    return ReduceResult(
        rng.normal(size=(n, 2)).astype(np.float32),
        idx,
        np.sort(rng.random((n, k)), 1).astype(np.float32),
        rng.integers(-1, 3, n).astype(np.int32),
        rng.random(n).astype(np.float32),
        np.full(n, 1 / n, np.float32),
    )


def test_atlas_contract(demo, tmp_path):
    out, df = demo
    sample = pd.DataFrame(
        {
            "image_id": df.image_id[:12],
            "path": [str(out / p) for p in df.path[:12]],
            "shard": [0] * 6 + [1] * 6,
        }
    )
    write_frame(sample, tmp_path / "sample.parquet")
    manifest = df[["image_id", "patient_id", "view_position", "manufacturer", "sex"]].copy()
    manifest["age"] = df["age"].astype("Float32")
    manifest["cardiomegaly"] = pd.array([1, 0, -1, None] * 30, dtype="Int8")
    hashed = ManifestColumns(findings=("cardiomegaly",)).tag(hash_ids(manifest, "s"))
    write_manifest(hashed, tmp_path / "manifest.parquet")  # as ingest leaves it
    for s in (0, 1):
        make_thumbnails(sample, s, 32, str(tmp_path / f"t{s}.parquet"))
    # model a misses image 3 (skipped); model b has every image, in another order
    ids_a = [i for j, i in enumerate(sample.image_id) if j != 3]
    ids_b = list(reversed(sample.image_id))
    write_parquet(reduced_table(ids_a, _result(11, 4, 0), "a"), tmp_path / "a.parquet")
    write_parquet(reduced_table(ids_b, _result(12, 4, 1), "b"), tmp_path / "b.parquet")
    summary = build_atlas(
        str(tmp_path / "sample.parquet"),
        str(tmp_path / "manifest.parquet"),
        {"a": str(tmp_path / "a.parquet"), "b": str(tmp_path / "b.parquet")},
        [str(tmp_path / "t0.parquet"), str(tmp_path / "t1.parquet")],
        str(tmp_path / "atlas.parquet"),
        str(tmp_path / "state.json"),
        metadata_columns=["patient_id", "view_position", "manufacturer", "sex", "age"],
    )
    t = pq.read_table(tmp_path / "atlas.parquet")
    n = t.num_rows
    assert n == 11 and summary["dropped"] == 1
    assert t.column("image_id").to_pylist() == ids_a  # sample order, skipped image left out
    schema = t.schema
    for m in ("a", "b"):
        assert schema.field(f"x_{m}").type == pa.float32()
        assert schema.field(f"cluster_{m}").type == pa.string()
        assert t.column(f"cluster_label_{m}").to_pylist() == t.column(f"cluster_{m}").to_pylist()
        assert schema.field(f"neighbors_{m}").type == pa.struct(
            [("ids", pa.list_(pa.int64())), ("distances", pa.list_(pa.float32()))]
        )
        for row in t.column(f"neighbors_{m}").to_pylist():
            assert all(0 <= i < n for i in row["ids"])
    assert not any(pa.types.is_dictionary(f.type) for f in schema)
    assert schema.field("cardiomegaly").type == pa.string()
    assert set(t.column("cardiomegaly").to_pylist()) <= {
        "positive",
        "negative",
        "uncertain",
        "not_mentioned",
    }
    assert "patient_id" not in schema.names
    assert t.column("patient_id_hash").to_pylist()[0] == hash_id(df.patient_id[0], "s")
    assert schema.field("age").type == pa.int16()
    # neighbours of model b point at the same images after re-indexing
    b_local = pq.read_table(tmp_path / "b.parquet").to_pylist()
    by_id = {r["image_id"]: r for r in b_local}
    row0 = t.slice(0, 1).to_pylist()[0]
    want = [ids_b[i] for i in by_id[row0["image_id"]]["neighbors"]["ids"] if ids_b[i] in set(ids_a)]
    assert [ids_a[i] for i in row0["neighbors_b"]["ids"]] == want
    img = Image.open(io.BytesIO(row0["thumbnail"]))
    assert img.format == "PNG" and max(img.size) == 32
    state = json.loads((tmp_path / "state.json").read_text())
    views = [c for c in state["charts"].values() if c.get("type") == "embedding"]
    assert [v["data"]["x"] for v in views] == ["x_a", "x_b"]
    assert all(v["data"]["neighbors"] == f"neighbors_{v['title']}" for v in views)
    assert [v["data"]["category"] for v in views] == ["cluster_label_a", "cluster_label_b"]
    # each model's own view: its map alone, each cluster's id at a member of that cluster
    view_state, labels = atlas_view_files(tmp_path, "b")
    own = json.loads(view_state.read_text())["charts"].values()
    assert [c["data"]["x"] for c in own if c.get("type") == "embedding"] == ["x_b"]
    labels = pd.read_parquet(labels)
    frame = t.select(["x_b", "y_b", "cluster_b"]).to_pandas()
    for r in labels.itertuples():
        at = frame[(frame["x_b"] == r.x) & (frame["y_b"] == r.y)]
        assert at["cluster_b"].tolist()[:1] == [r.text]
    assert list(labels.columns) == ["x", "y", "text", "content", "level", "priority"]
    assert labels["priority"].sum() == (t.column("cluster_b").to_numpy() != "noise").sum()


def test_state_lists_findings_as_multilabel():
    s = atlas_state(["m"], {"view_position": 1, "findings": 1, "cluster_m": 1})
    kinds = [(c["type"], c.get("data", {}).get("field")) for c in s["charts"].values()]
    assert ("count-plot", "findings") in kinds and kinds[-1] == ("instances", None)
    assert [c for c in s["charts"].values() if c.get("data", {}).get("isList")]
    s = atlas_state(["m", "n"], {"agreement": 1, "outlier_m": 1, "outlier_n": 1})
    hist = [c for c in s["charts"].values() if "layers" in c]
    assert [c["title"] for c in hist] == ["agreement", "outlier_m", "outlier_n"]
    assert hist[0]["layers"][1]["filter"] == "$filter"  # the second layer follows the selection


def test_thumbnails_follow_atlas_rows_and_switch_to_jpeg_for_large_samples(tmp_path):
    from cxratlas.atlas.table import _thumbnails
    from cxratlas.atlas.thumbnails import JPEG_PAST, thumbnail_encoding
    from cxratlas.ingest.imaging import thumbnail_png

    assert thumbnail_encoding("auto", JPEG_PAST) == "png"
    assert thumbnail_encoding("auto", JPEG_PAST + 1) == "jpeg"
    assert thumbnail_encoding("png", 10**7) == "png"
    try:
        thumbnail_encoding("webp", 10)
    except ValueError as exc:
        assert "atlas.thumbnail_format" in str(exc) and "'webp'" in str(exc)
    else:
        raise AssertionError("an unknown thumbnail format must be refused")
    img = Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (64, 1)))
    jpeg = thumbnail_png(img, 32, "jpeg")
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    paths = []
    for shard, names in enumerate((["a", "b"], ["c"])):  # bytes name each image
        paths.append(tmp_path / f"t{shard}.parquet")
        pq.write_table(pa.table({"image_id": names, "thumbnail": [n.encode() for n in names]}),
                       paths[-1])  # fmt: skip
    same = _thumbnails(paths, ["a", "b", "c"])
    assert same.num_chunks == 2 and same.to_pylist() == [b"a", b"b", b"c"]  # no copy
    dropped = _thumbnails(paths, ["a", "c"])  # an image some model skipped: filtered
    assert dropped.num_chunks == 2 and dropped.to_pylist() == [b"a", b"c"]
    moved = _thumbnails(paths, ["c", "a", "x"])  # reordered, and one never thumbnailed
    assert moved.to_pylist() == [b"c", b"a", None]
    assert same.type == dropped.type == moved.type == pa.binary()
