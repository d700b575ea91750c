"""The shared sample: seeded, stratified, order-free, monotone as the archive grows, and a shard
ledger that keeps every image in its shard."""

import numpy as np
import pandas as pd
import pytest

from cxratlas.ingest.sample import assign_shards, draw_sample, n_shards


def _manifest(n=1000, start=0, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(start, start + n)],
            "path": [f"{i}.png" for i in range(start, start + n)],
            "patient_id": [f"p{i // 3}" for i in range(start, start + n)],
            "view_position": rng.choice(["PA", "AP", "LATERAL"], n, p=[0.6, 0.3, 0.1]),
        }
    )


def test_seeded_and_shared():
    m = _manifest()
    a = draw_sample(m, 200, seed=1, stratify_by=[])
    b = draw_sample(m, 200, seed=1, stratify_by=[])
    c = draw_sample(m, 200, seed=2, stratify_by=[])
    assert a.equals(b) and set(a.image_id) != set(c.image_id)
    assert a["image_id"].is_unique and len(a) == 200
    assert a["sample_rank"].is_monotonic_increasing  # rank order


def test_stratified_keeps_proportions_exactly():
    m = _manifest()
    s = draw_sample(m, 100, seed=0, stratify_by=["view_position"])
    want = m["view_position"].value_counts(normalize=True) * 100
    got = s.merge(m, on="image_id")["view_position"].value_counts()
    assert all(abs(got[k] - want[k]) < 1 for k in want.index)


def test_row_order_does_not_change_the_draw_or_the_shards():
    m = _manifest()
    a = draw_sample(m, 150, seed=3, stratify_by=["view_position"])
    shuffled = m.sample(frac=1, random_state=9).reset_index(drop=True)
    b = draw_sample(shuffled, 150, seed=3, stratify_by=["view_position"])
    assert a.equals(b)
    # the ids read back as another dtype (a Parquet or TSV export) hash the same
    typed = shuffled.astype({"image_id": "string", "view_position": "category"})
    assert draw_sample(typed, 150, seed=3, stratify_by=["view_position"]).equals(a)
    la, _ = assign_shards(a, None, 40)
    lb, _ = assign_shards(b, None, 40)
    assert la.equals(lb)


def test_growth_changes_the_sample_only_as_far_as_new_rows_displace_picks():
    old = _manifest(1000)
    grown = pd.concat([old, _manifest(100, start=1000, seed=1)], ignore_index=True)
    a = set(draw_sample(old, 200, 0, ["view_position"]).image_id)
    b = set(draw_sample(grown, 200, 0, ["view_position"]).image_id)
    entered = b - a
    assert entered <= set(grown.image_id[1000:])  # only new rows enter: no old row swaps in
    assert len(a - b) == len(entered)  # each entry displaces one pick (n is fixed)
    # about 100/1100 of the sample is displaced (bottom-k), not all of it
    assert 5 <= len(entered) <= 35, len(entered)
    # with n: null every row is sampled, and the growth is exactly the new rows
    everything = set(draw_sample(grown, None, 0, ["view_position"]).image_id)
    assert everything - set(draw_sample(old, None, 0, ["view_position"]).image_id) == set(
        grown.image_id[1000:]
    )


def test_pruning_removes_exactly_the_withdrawn_rows_when_all_are_sampled():
    m = _manifest(300)
    a = draw_sample(m, None, 0, [])
    gone = set(m.image_id[:10])
    b = draw_sample(m.loc[~m.image_id.isin(gone)], None, 0, [])
    assert set(a.image_id) - set(b.image_id) == gone and set(b.image_id) < set(a.image_id)


def test_patient_unit_keeps_a_patients_images_together():
    m = _manifest(900)
    s = draw_sample(m, 150, 4, [], unit="patient")
    chosen = m.loc[m.image_id.isin(s.image_id)]
    per_patient = m.groupby("patient_id").size()
    got = chosen.groupby("patient_id").size()
    assert got.equals(per_patient.loc[got.index])
    assert 150 <= len(s) <= 152  # the last patient's images come whole
    with pytest.raises(KeyError, match="patient_id"):
        draw_sample(m.drop(columns="patient_id"), 10, 0, [], unit="patient")


def test_ledger_keeps_shards_and_puts_new_images_in_new_shards():
    m = _manifest(100)
    first, ch = assign_shards(draw_sample(m, None, 0, []), None, 30)
    assert first["shard"].value_counts().sort_index().tolist() == [30, 30, 30, 10]
    assert ch.rerun == [0, 1, 2, 3] and len(ch.added) == 100
    grown = pd.concat([m, _manifest(25, start=100)], ignore_index=True)
    grown = grown.loc[~grown.image_id.isin(["i0", "i1"])].sample(frac=1, random_state=1)
    grown.loc[grown.image_id == "i5", "path"] = "moved/5.png"
    second, ch = assign_shards(draw_sample(grown, None, 0, []), first, 30)
    was = first.set_index("image_id")["shard"]
    kept = second.loc[second.image_id.isin(was.index)]
    assert (kept["shard"].to_numpy() == was.loc[kept.image_id].to_numpy()).all()
    new = second.loc[~second.image_id.isin(was.index)]
    assert set(new["shard"]) == {4} and len(new) == 25  # shard 3's room is not reused
    assert sorted(ch.removed) == ["i0", "i1"] and ch.changed == ["i5"]
    i5 = int(was["i5"])
    assert ch.rerun == sorted({4, i5})
    revs = second.groupby("shard")["shard_rev"].max()
    assert revs[i5] == 1 and (revs.drop(i5) == 0).all()
    lost = {int(was["i0"]), int(was["i1"])} - {i5}
    assert ch.pruned == sorted(lost) and ch.gone == []


def test_unknown_stratum_column_named():
    with pytest.raises(KeyError, match="site"):
        draw_sample(_manifest(), 10, seed=0, stratify_by=["site"])


def test_n_shards():
    assert n_shards(0, 10) == 1 and n_shards(10, 10) == 1 and n_shards(11, 10) == 2
