"""The `precomputed` kind reads each public layout by image id, and refuses bad sources by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxratlas.embed.models import ModelConfigError, load_embedder
from cxratlas.io import embedding_table, write_parquet

RNG = np.random.default_rng(0)
IDS = [f"img{i:03d}" for i in range(10)]
VECS = RNG.normal(size=(10, 6)).astype(np.float32)


def _rows(ids=IDS, **cols) -> pd.DataFrame:
    return pd.DataFrame({"image_id": ids, "path": [f"/x/{i}.png" for i in ids], **cols})


def _check(model, rows, want_ids, want):
    ids, X, skipped, missing = model.lookup(rows)
    assert ids == want_ids and X.dtype == np.float32
    assert np.allclose(X, want)
    return skipped, missing


def test_parquet_with_id_filter_missing_and_nan(tmp_path):
    vecs = VECS.copy()
    vecs[2, 0] = np.inf
    write_parquet(embedding_table(IDS[:8], vecs[:8]), tmp_path / "e.parquet")
    m = load_embedder("pre", {"kind": "precomputed", "source": str(tmp_path / "e.parquet")})
    rows = _rows(IDS[1:])  # a shard: img001..img009
    skipped, missing = _check(m, rows, [IDS[1]] + IDS[3:8], np.r_[VECS[1:2], VECS[3:8]])
    assert missing == ["img008", "img009"]
    assert skipped[0]["image_id"] == "img002" and "NaN/inf" in skipped[0]["reason"]
    assert m.dim == 6


def test_parquet_with_other_column_names_and_plain_lists(tmp_path):
    pd.DataFrame({"dicom_id": IDS, "vec": list(VECS)}).to_parquet(tmp_path / "e.parquet")
    entry = {"kind": "precomputed", "source": str(tmp_path / "e.parquet")}
    with pytest.raises(ModelConfigError, match=r"has no column 'image_id'; columns: \['dicom_id'"):
        load_embedder("pre", entry).lookup(_rows())
    m = load_embedder("pre", {**entry, "id_column": "dicom_id", "vector_column": "vec"})
    _check(m, _rows(IDS[:3]), IDS[:3], VECS[:3])


def test_npy_matrix_with_an_id_list(tmp_path):
    np.save(tmp_path / "e.npy", VECS)
    (tmp_path / "ids.txt").write_text("\n".join(IDS) + "\n")
    entry = {"kind": "precomputed", "source": str(tmp_path / "e.npy")}
    with pytest.raises(ModelConfigError, match="needs 'ids'"):
        load_embedder("pre", entry)
    m = load_embedder("pre", {**entry, "ids": str(tmp_path / "ids.txt")})
    _check(m, _rows(IDS[5:]), IDS[5:], VECS[5:])
    (tmp_path / "short.txt").write_text("\n".join(IDS[:4]))
    bad = load_embedder("pre", {**entry, "ids": str(tmp_path / "short.txt")})
    with pytest.raises(ModelConfigError, match="has 10 rows but .*short.txt lists 4 ids"):
        bad.lookup(_rows())


def test_google_cxr_foundation_npz_keyed_by_image_id(tmp_path):
    """precomputed_image_embeddings.npz: one (32, 128) token array per NIH image id."""
    tokens = RNG.normal(size=(3, 32, 128)).astype(np.float32)
    np.savez(tmp_path / "emb.npz", **{i: t for i, t in zip(IDS[:3], tokens, strict=True)})
    src = str(tmp_path / "emb.npz")
    m = load_embedder("elixr", {"kind": "precomputed", "source": src})
    _check(m, _rows(IDS[:3]), IDS[:3], tokens.reshape(3, -1))
    m = load_embedder("elixr", {"kind": "precomputed", "source": src, "tokens": "mean"})
    _check(m, _rows(IDS[:3]), IDS[:3], tokens.mean(1))


def test_mimic_generalized_embeddings_tfrecord_folder(tmp_path):
    """One TFRecord per image at files/pXX/p<subject>/s<study>/<dicom_id>.tfrecord, written by an
    independent TFRecord implementation (the `tfrecord` package)."""
    writer_mod = pytest.importorskip("tfrecord.writer")
    subjects = ["10000032", "10000032", "11000011"]
    studies = ["50414267", "53189527", "51234567"]
    for i, (subj, study) in enumerate(zip(subjects, studies, strict=True)):
        path = tmp_path / f"files/p{subj[:2]}/p{subj}/s{study}/{IDS[i]}.tfrecord"
        path.parent.mkdir(parents=True, exist_ok=True)
        w = writer_mod.TFRecordWriter(str(path))
        w.write(
            {
                "image/id": (f"files/p{subj[:2]}/p{subj}/s{study}/{IDS[i]}.dcm".encode(), "byte"),
                "embedding": (VECS[i].tolist(), "float"),
            }
        )
        w.close()
    entry = {
        "kind": "precomputed",
        "source": str(tmp_path),
        "path_template": "files/p{patient_id:.2}/p{patient_id}/s{study_id}/{image_id}.tfrecord",
    }
    m = load_embedder("cxr_foundation", entry)
    rows = _rows(IDS[:4], patient_id=subjects + ["12000000"], study_id=studies + ["50000000"])
    skipped, missing = _check(m, rows, IDS[:3], VECS[:3])
    assert missing == [IDS[3]] and skipped == []
    # the same files by the images' relative folder (what a hashed-id manifest still knows)
    by_dir = load_embedder(
        "cxr_foundation", {**entry, "path_template": "{rel_dir}/{rel_stem}.tfrecord"}
    )
    rel = [f"files/p{s[:2]}/p{s}/s{t}/{i}.jpg" for s, t, i in zip(subjects + ["12000000"],
           studies + ["50000000"], IDS[:4], strict=True)]  # fmt: skip
    assert _check(by_dir, _rows(IDS[:4], rel_path=rel), IDS[:3], VECS[:3])[1] == [IDS[3]]
    # a truncated record is skipped and recorded, not fatal
    bad = tmp_path / f"files/p10/p10000032/s50414267/{IDS[0]}.tfrecord"
    bad.write_bytes(bad.read_bytes()[:-10])
    skipped, _ = m.lookup(rows)[2:]
    assert skipped[0]["image_id"] == IDS[0] and "truncated" in skipped[0]["reason"]
    with pytest.raises(ModelConfigError, match="path_template .* needs 'patient_id'"):
        m.lookup(_rows(IDS[:1]))


def test_folder_of_per_image_npy_and_npz(tmp_path):
    for i in range(3):
        np.save(tmp_path / f"{IDS[i]}.npy", VECS[i])
        np.savez(tmp_path / f"{IDS[i]}.npz", embedding=VECS[i], other=VECS[i] * 0)
    npy = load_embedder(
        "a", {"kind": "precomputed", "source": str(tmp_path), "path_template": "{image_id}.npy"}
    )
    _check(npy, _rows(IDS[:3]), IDS[:3], VECS[:3])
    npz = load_embedder(
        "b", {"kind": "precomputed", "source": str(tmp_path), "path_template": "{image_id}.npz"}
    )
    _check(npz, _rows(IDS[:3]), IDS[:3], VECS[:3])


def test_dimension_mismatch_and_bad_sources_are_named(tmp_path):
    np.save(tmp_path / f"{IDS[0]}.npy", VECS[0])
    np.save(tmp_path / f"{IDS[1]}.npy", VECS[1, :4])
    m = load_embedder(
        "a", {"kind": "precomputed", "source": str(tmp_path), "path_template": "{image_id}.npy"}
    )
    with pytest.raises(ModelConfigError, match=r"\[img001\] has 4 values, expected 6"):
        m.lookup(_rows(IDS[:2]))
    with pytest.raises(ModelConfigError, match="does not exist"):
        load_embedder("a", {"kind": "precomputed", "source": str(tmp_path / "nope.parquet")})
    (tmp_path / "e.h5").write_text("x")
    with pytest.raises(ModelConfigError, match="use a Parquet, .npy, .npz file or a folder"):
        load_embedder("a", {"kind": "precomputed", "source": str(tmp_path / "e.h5")})
    with pytest.raises(ModelConfigError, match="needs 'path_template'"):
        load_embedder("a", {"kind": "precomputed", "source": str(tmp_path)})
