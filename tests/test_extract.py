import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cxratlas.embed.extract import ExtractSettings, ShardFiles, extract_shard
from cxratlas.io import ShardReport, embedding_table, merge_shards, read_embeddings, write_parquet


@pytest.fixture
def sample(demo, tmp_path):
    out, df = demo
    s = pd.DataFrame(
        {"image_id": df["image_id"][:20], "path": [str(out / p) for p in df.path[:20]]}
    )
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    bad = pd.DataFrame(
        {
            "image_id": ["zero", "text", "gone"],
            "path": [
                str(tmp_path / "zero.png"),
                str(tmp_path / "text.png"),
                str(tmp_path / "gone.png"),
            ],
        }
    )
    s = pd.concat([s, bad], ignore_index=True)
    s["shard"] = [0] * 12 + [1] * 11
    return s


def test_shard_contract_and_bad_images_recorded(sample, tmp_path):
    entry = {"kind": "pixels", "image_size": 16, "batch_size": 5}
    rep = extract_shard(
        sample, 1, "px", entry, ShardFiles(str(tmp_path / "s1.parquet"), str(tmp_path / "s1.json"))
    )
    table = pq.read_table(tmp_path / "s1.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 256)
    assert table.schema.field("image_id").type == pa.string()
    ids, X, meta = read_embeddings(tmp_path / "s1.parquet")
    assert ids == sample.loc[sample.shard == 1, "image_id"].tolist()[:8]
    assert X.shape == (8, 256) and meta["model"] == "px" and meta["shard"] == 1
    assert ShardReport.read(tmp_path / "s1.json") == rep
    report = json.loads((tmp_path / "s1.json").read_text())  # the file, as other tools read it
    assert report["embedded"] == 8 and report["images"] == 11 and report["missing"] == 0
    assert report["images_per_s_inference"] == pytest.approx(8 / report["inference_s"])
    reasons = {s["image_id"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"zero", "text", "gone"}
    assert "empty file" in reasons["zero"] and "cannot decode" in reasons["text"]
    assert "not found" in reasons["gone"] and "gone.png" in reasons["gone"]
    assert report["read_s"] >= 0 and report["inference_s"] >= 0


def test_failed_shard_leaves_no_file(sample, tmp_path, monkeypatch):
    from cxratlas.embed.models.pixels import PixelEmbedder

    def boom(self, batch):
        raise RuntimeError("CUDA out of memory (planted)")

    monkeypatch.setattr(PixelEmbedder, "embed", boom)
    with pytest.raises(RuntimeError, match="planted"):
        extract_shard(
            sample,
            0,
            "px",
            {"kind": "pixels"},
            ShardFiles(str(tmp_path / "s0.parquet"), str(tmp_path / "s0.json")),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.png", "zero.png"]


def test_nan_embeddings_are_an_error(sample, tmp_path, monkeypatch):
    from cxratlas.embed.models.pixels import PixelEmbedder

    monkeypatch.setattr(PixelEmbedder, "embed", lambda self, b: np.full((len(b), 4), np.nan))
    with pytest.raises(FloatingPointError, match="NaN/inf on shard 0"):
        extract_shard(
            sample,
            0,
            "px",
            {"kind": "pixels"},
            ShardFiles(str(tmp_path / "s.parquet"), str(tmp_path / "s.json")),
        )
    assert not (tmp_path / "s.parquet").exists()


def test_hf_shard_through_the_real_loader(sample, tiny_dinov2, tmp_path):
    entry = {"kind": "hf_automodel", "weights": str(tiny_dinov2), "batch_size": 4}
    rep = extract_shard(
        sample,
        0,
        "rad",
        entry,
        ShardFiles(str(tmp_path / "h.parquet"), str(tmp_path / "h.json")),
        ExtractSettings(device="cpu"),
    )
    ids, X, meta = read_embeddings(tmp_path / "h.parquet")
    assert len(ids) == 12 and X.shape == (12, 32) and meta["kind"] == "hf_automodel"
    assert rep.skipped == [] and np.isfinite(X).all()


def test_merge_in_shard_order_and_checks(tmp_path):
    a = tmp_path / "a.parquet"
    b = tmp_path / "b.parquet"
    write_parquet(embedding_table(["x", "y"], np.ones((2, 3)), {"shard": 0}), a)
    write_parquet(embedding_table(["z"], np.zeros((1, 3)), {"shard": 1}), b)
    assert merge_shards([str(a), str(b)], str(tmp_path / "m.parquet")) == 3
    ids, X, meta = read_embeddings(tmp_path / "m.parquet")
    assert ids == ["x", "y", "z"] and meta["shards"] == 2 and "shard" not in meta
    write_parquet(embedding_table(["x"], np.zeros((1, 3))), b)
    with pytest.raises(ValueError, match="image id x appears in more than one shard"):
        merge_shards([str(a), str(b)], str(tmp_path / "m2.parquet"))
    write_parquet(embedding_table(["q"], np.zeros((1, 4))), b)
    with pytest.raises(ValueError, match="disagree on the embedding dimension"):
        merge_shards([str(a), str(b)], str(tmp_path / "m3.parquet"))


def test_mostly_unreadable_shard_fails_and_writes_nothing(sample, tmp_path):
    from cxratlas.atlas.thumbnails import make_thumbnails
    from cxratlas.ingest.imaging import TooManyUnreadableError

    s = sample.copy()
    s.loc[s.shard == 0, "path"] = str(tmp_path / "mount-gone.png")
    with pytest.raises(TooManyUnreadableError, match=r"shard 0: 12 of 12 images unreadable"):
        extract_shard(
            s,
            0,
            "px",
            {"kind": "pixels"},
            ShardFiles(str(tmp_path / "s.parquet"), str(tmp_path / "s.json")),
            ExtractSettings(max_skipped_fraction=0.5),
        )
    with pytest.raises(TooManyUnreadableError, match="thumbnails of shard 0"):
        make_thumbnails(s, 0, 32, str(tmp_path / "t.parquet"))
    assert not any(p.suffix in (".parquet", ".json") for p in tmp_path.iterdir())
    # 3 of 11 unreadable stays under the threshold: written, with the skips recorded
    assert make_thumbnails(sample, 1, 32, str(tmp_path / "t1.parquet")) == 3


def test_auto_workers_follow_the_slurm_allocation(monkeypatch):
    from cxratlas.embed.workers import auto_workers

    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert auto_workers() == 0
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")
    assert 0 <= auto_workers() <= 8


def test_float16_storage_halves_the_file_and_reads_back_as_float32(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 64)).astype(np.float32)
    ids = [f"i{i}" for i in range(500)]
    write_parquet(embedding_table(ids, X), tmp_path / "f32.parquet")
    write_parquet(embedding_table(ids, X, storage="float16"), tmp_path / "f16.parquet")
    assert pq.read_schema(tmp_path / "f16.parquet").field("embedding").type == pa.list_(
        pa.float16(), 64
    )
    size32 = (tmp_path / "f32.parquet").stat().st_size
    assert (tmp_path / "f16.parquet").stat().st_size < 0.6 * size32
    got_ids, Y, meta = read_embeddings(tmp_path / "f16.parquet")
    assert got_ids == ids and Y.dtype == np.float32 and meta["storage"] == "float16"
    assert np.abs(Y - X).max() < 4e-3 * np.abs(X).max()
    # merging streams shard by shard and keeps the type
    write_parquet(embedding_table(ids[:5], X[:5], storage="float16"), tmp_path / "a.parquet")
    write_parquet(embedding_table(ids[5:9], X[5:9], storage="float16"), tmp_path / "b.parquet")
    n = merge_shards(
        [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], str(tmp_path / "m.parquet")
    )
    merged_ids, M, _ = read_embeddings(tmp_path / "m.parquet")
    assert n == 9 and merged_ids == ids[:9] and np.allclose(M, Y[:9])


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_earlier_vectors_are_reused_bit_for_bit_whatever_shard_the_image_is_in(
    demo, tmp_path, storage
):
    """A resharded, regrown sample: vectors of unchanged files are copied from the last merged
    file, never computed again; a touched file or another model entry is computed again."""
    out, df = demo
    rows = pd.DataFrame(
        {"image_id": df.image_id[:16], "path": [str(out / p) for p in df.path[:16]]}
    )
    entry = {"kind": "pixels", "image_size": 16, "batch_size": 4}
    settings = ExtractSettings(storage=storage)
    first = rows.iloc[:10].assign(shard=0)
    files = ShardFiles(str(tmp_path / "a.parquet"), str(tmp_path / "a.json"))
    extract_shard(first, 0, "px", entry, files, settings)
    merged = str(tmp_path / "px.parquet")
    merge_shards([files.shard], merged)
    import os

    touched = rows.path[3]
    os.utime(touched, ns=(os.stat(touched).st_atime_ns, os.stat(touched).st_mtime_ns + 10**9))
    # next month: the ten images now sit in shard 3, with six new ones
    later = rows.assign(shard=3)
    again = ShardFiles(str(tmp_path / "b.parquet"), str(tmp_path / "b.json"), earlier=merged)
    rep = extract_shard(later, 3, "px", entry, again, settings)
    assert (rep.reused, rep.embedded, rep.images) == (9, 7, 16)  # the touched file: computed
    t0, t1 = pq.read_table(files.shard), pq.read_table(again.shard)
    assert t1.column("image_id").to_pylist() == rows.image_id.tolist()  # the shard's order
    assert t1.schema.field("embedding").type == t0.schema.field("embedding").type
    raw = {
        name: dict(zip(t.column("image_id").to_pylist(),
                       t.column("embedding").to_pylist(), strict=True))
        for name, t in (("first", t0), ("later", t1))
    }  # fmt: skip
    reused = [i for i in rows.image_id[:10] if i != rows.image_id[3]]
    assert all(raw["later"][i] == raw["first"][i] for i in reused)
    # a fresh run embeds the same values: reuse changes where a vector comes from, not what it is
    fresh = ShardFiles(str(tmp_path / "c.parquet"), str(tmp_path / "c.json"))
    extract_shard(later, 3, "px", entry, fresh, settings)
    assert pq.read_table(fresh.shard).column("embedding").equals(t1.column("embedding"))
    # another model entry reuses nothing
    other = ShardFiles(str(tmp_path / "d.parquet"), str(tmp_path / "d.json"), earlier=merged)
    rep = extract_shard(later, 3, "px", entry | {"batch_size": 8}, other, settings)
    assert (rep.reused, rep.embedded) == (0, 16)
    # a shard whose files are all gone (a node without the mount): the plan counts them as to
    # embed, and does not fail on the empty list of ids it can look up
    from cxratlas.embed.reuse import planned_embeddings

    gone = later.assign(path=[f"/nowhere/{i}.png" for i in later.image_id])
    assert planned_embeddings(gone, merged, entry, None, storage) == 16
    assert planned_embeddings(later, merged, entry, None, storage) == 7
