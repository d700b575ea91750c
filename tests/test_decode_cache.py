"""The decode cache: every image decoded once per shard, read back by every model unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from cxratlas.atlas.thumbnails import make_thumbnails
from cxratlas.embed.decode_cache import write_decode_cache
from cxratlas.embed.extract import ShardFiles, extract_shard
from cxratlas.ingest.imaging import ImageSource, load_gray8
from cxratlas.io import read_embeddings


def _sample(demo, tmp_path) -> pd.DataFrame:
    out, df = demo
    s = pd.DataFrame({"image_id": df["image_id"][:9], "path": [str(out / p) for p in df.path[:9]]})
    (tmp_path / "text.png").write_text("not an image")
    ramp = np.tile(np.linspace(500, 64000, 300), (200, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "wide16.png")
    extra = pd.DataFrame(
        {
            "image_id": ["text", "wide16"],
            "path": [str(tmp_path / "text.png"), str(tmp_path / "wide16.png")],
        }
    )
    s = pd.concat([s, extra], ignore_index=True)
    s["shard"] = 0
    return s


def test_cache_holds_each_image_once_with_errors_kept(demo, tmp_path):
    sample = _sample(demo, tmp_path)
    stats = write_decode_cache(sample, 0, 128, tmp_path / "d.parquet", workers=2)
    assert stats == {"images": 11, "unreadable": 1}
    table = pq.read_table(tmp_path / "d.parquet").to_pandas().set_index("image_id")
    assert "cannot decode" in table.at["text", "error"] and table.at["text", "image"] is None
    source = ImageSource(tmp_path / "d.parquet")
    wide = source.load("wide16", "unused")
    assert wide.mode == "L" and wide.size == (128, 85)  # longest side cut, aspect kept
    assert np.asarray(wide).max() > 250  # windowed from 16 bits, not saturated or black
    small = source.load(sample.image_id[0], "unused")  # 256-px phantom -> 128
    assert max(small.size) == 128
    # an id that is not in the cache falls back to its file
    assert source.load("other", sample.path[0]).size == load_gray8(sample.path[0]).size


def test_models_read_the_cache_as_they_read_the_files(demo, tmp_path):
    sample = _sample(demo, tmp_path)
    write_decode_cache(sample, 0, 4096, tmp_path / "full.parquet", workers=1)  # no downsizing
    entry = {"kind": "pixels", "image_size": 24}
    direct = extract_shard(
        sample, 0, "px", entry, ShardFiles(str(tmp_path / "a.parquet"), str(tmp_path / "a.json"))
    )
    cached = extract_shard(
        sample,
        0,
        "px",
        entry,
        ShardFiles(
            str(tmp_path / "b.parquet"),
            str(tmp_path / "b.json"),
            decoded=str(tmp_path / "full.parquet"),
        ),
    )
    ids_a, A, _ = read_embeddings(tmp_path / "a.parquet")
    ids_b, B, _ = read_embeddings(tmp_path / "b.parquet")
    assert ids_a == ids_b and len(ids_a) == 10 and np.array_equal(A, B)  # lossless PNG
    assert (
        [s["image_id"] for s in cached.skipped]
        == ["text"]
        == [s["image_id"] for s in direct.skipped]
    )
    assert "cannot decode" in json.loads((tmp_path / "b.json").read_text())["skipped"][0]["reason"]
    make_thumbnails(
        sample, 0, 32, str(tmp_path / "t.parquet"), decoded_path=str(tmp_path / "full.parquet")
    )
    thumbs = pq.read_table(tmp_path / "t.parquet").to_pandas()
    assert thumbs["thumbnail"].isna().sum() == 1 and len(thumbs) == 11
