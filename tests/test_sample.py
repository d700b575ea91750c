import numpy as np
import pandas as pd
import pytest

from cxratlas.ingest.sample import draw_sample, n_shards


def _manifest(n=1000):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(n)],
            "path": [f"{i}.png" for i in range(n)],
            "view_position": rng.choice(["PA", "AP", "LATERAL"], n, p=[0.6, 0.3, 0.1]),
        }
    )


def test_seeded_and_shared():
    m = _manifest()
    a = draw_sample(m, 200, seed=1, stratify_by=[], shard_size=50)
    b = draw_sample(m, 200, seed=1, stratify_by=[], shard_size=50)
    c = draw_sample(m, 200, seed=2, stratify_by=[], shard_size=50)
    assert a.equals(b) and set(a.image_id) != set(c.image_id)
    assert a["image_id"].is_unique and len(a) == 200
    assert a["shard"].value_counts().sort_index().tolist() == [50, 50, 50, 50]


def test_stratified_keeps_proportions_exactly():
    m = _manifest()
    s = draw_sample(m, 100, seed=0, stratify_by=["view_position"], shard_size=30)
    want = m["view_position"].value_counts(normalize=True) * 100
    got = s.merge(m, on="image_id")["view_position"].value_counts()
    assert all(abs(got[k] - want[k]) < 1 for k in want.index)


def test_more_than_available_takes_all_in_the_shards_it_needs():
    m = _manifest(30)
    s = draw_sample(m, 100, seed=0, stratify_by=["view_position"], shard_size=10)
    assert len(s) == 30 and sorted(s["shard"].unique()) == [0, 1, 2]  # no empty shard 3..9


def test_unknown_stratum_column_named():
    with pytest.raises(KeyError, match="site"):
        draw_sample(_manifest(), 10, seed=0, stratify_by=["site"], shard_size=5)


def test_n_shards():
    assert n_shards(0, 10) == 1 and n_shards(10, 10) == 1 and n_shards(11, 10) == 2
