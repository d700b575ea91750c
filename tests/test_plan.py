"""The plan made before any job: manifest mistakes named, the sample kept byte-for-byte when only
metadata changes, sample.n clamped to the usable rows, analysis names checked; and the defaults
that must fit any dataset (label-noise finding, the pixel baseline's PCA)."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from cxratlas.config import UserConfig
from cxratlas.ingest.manifest import ManifestError, ingest_manifest, read_table
from cxratlas.ingest.plan import SAMPLE_PATH, PlanError, commit_plan, make_plan, proposed_ledger
from cxratlas.io import ManifestColumns

REPO = Path(__file__).resolve().parent.parent


def plan_and_commit(cfg, **kw):
    """What a real run does: plan while the workflow is read, commit at onstart."""
    plan = make_plan(cfg, say=lambda _: None, **kw)
    commit_plan(plan, say=lambda _: None)
    return plan


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / f"{i}.png")
    return pd.DataFrame(
        {
            "uid": [f"img{i}" for i in range(n)],
            "file": [f"{i}.png" for i in range(n)],
            "view": ["PA", "AP"] * (n // 2),
            "covid": ["1", "0", "0", ""] * (n // 4),
            "site": ["a", "b", "c", "a"] * (n // 4),
            "tb": ["0", "1"] * (n // 2),
        }
    )


def _config(tmp_path, **dataset):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["dataset"].update(
        preset="generic", manifest=str(tmp_path / "m.csv"), image_root=str(tmp_path / "img"),
        columns={"image_id": "uid", "path": "file", "view_position": "view"},
        label_columns=["covid"], **dataset,
    )  # fmt: skip
    cfg["sample"].update(n=1000, stratify_by=["view_position"])
    cfg["extract"]["shard_size"] = 16
    return cfg


@pytest.fixture
def archive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = _images(tmp_path / "img", 40)
    table.to_csv(tmp_path / "m.csv", index=False)
    return tmp_path, table


def test_read_table_names_every_unusable_file(tmp_path):
    cases = {
        "sheet.xlsx": (b"PK\x03\x04", "spreadsheet files are not read"),
        "zero.csv": (b"", "the file is empty (0 bytes)"),
        "header.csv": (b"image_id,path\n", "has a header (image_id, path) but no rows"),
        "blank.csv": (b"\n\n", "no header and no rows"),
        "data.json": (b"{}", "unsupported manifest format '.json'"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ManifestError, match=re.escape(message)):
            read_table(tmp_path / name)
    with pytest.raises(ManifestError, match="is a directory, not a manifest file"):
        read_table(tmp_path)


def test_a_directory_path_or_no_image_at_all_stops_ingest(archive):
    folder, table = archive
    bad = table.copy()
    bad.loc[5, "file"] = "."
    with pytest.raises(ManifestError, match=r"row 7, column 'path': .* is a directory"):
        ingest_manifest(bad, folder / "img", columns={"image_id": "uid", "path": "file"})
    with pytest.raises(ManifestError, match="none of the 40 image files exists"):
        ingest_manifest(table, folder / "nowhere", columns={"image_id": "uid", "path": "file"})


def test_ingest_records_findings_and_attributes_of_any_name(archive):
    folder, table = archive
    m, _ = ingest_manifest(table, folder / "img", columns={"image_id": "uid", "path": "file"},
                           label_columns=["covid"], keep_columns=["site"])  # fmt: skip
    assert ManifestColumns.of(m) == ManifestColumns(("covid",), ("site",))
    assert m["covid"].dtype == "Int8" and int((m["covid"] == 1).sum()) == 10


def test_metadata_changes_keep_the_sample_file(archive):
    folder, table = archive
    cfg = _config(folder)
    plan = make_plan(cfg, say=lambda _: None)
    assert not Path("results").exists()  # planning (what -n does) writes nothing there
    commit_plan(plan, say=lambda _: None)
    assert plan.n_images == 40 and plan.n_shards == 3  # 1000 asked, 40 usable: 3 shards, not 63
    assert any("sample.n is 1000 but the datasets hold 40 usable images" in n for n in plan.notes)
    stamp = os.stat(SAMPLE_PATH).st_mtime_ns
    for change in ("label", "keep", "value"):
        if change == "label":
            cfg["dataset"]["label_columns"] = ["covid", "tb"]
        elif change == "keep":
            cfg["dataset"]["keep_columns"] = ["site"]
        else:
            table.loc[3, "covid"] = "1"
            table.to_csv(folder / "m.csv", index=False)
        again = plan_and_commit(copy.deepcopy(cfg))
        assert again.sample_sha == plan.sample_sha and again.key != plan.key, change
        assert os.stat(SAMPLE_PATH).st_mtime_ns == stamp, change
    cfg["sample"]["seed"] = 1  # a real change of the sample is written
    cfg["sample"]["n"] = 30
    changed = plan_and_commit(cfg)
    assert changed.sample_sha != plan.sample_sha and changed.n_images == 30
    assert os.stat(SAMPLE_PATH).st_mtime_ns != stamp


def test_plan_refuses_before_writing_anything(archive):
    folder, table = archive
    cfg = _config(folder)
    cfg["analysis"]["probes"]["findings"] = ["covid", "pneumonia"]
    with pytest.raises(PlanError, match=r"analysis.probes.findings: \['pneumonia'\] not among"):
        make_plan(cfg, say=lambda _: None)
    cfg = _config(folder)
    cfg["sample"]["stratify_by"] = ["scanner"]
    user = UserConfig((("user.yaml", {"sample": {"stratify_by": ["scanner"]}}),))
    with pytest.raises(
        PlanError, match=r"sample.stratify_by \(in user.yaml\): column\(s\) \['scanner'\]"
    ):
        make_plan(cfg, say=lambda _: None, user=user)
    assert not (folder / "results").exists()


def test_a_default_column_gives_way_and_the_users_own_does_not(archive):
    """The same `stratify_by: [scanner]`: dropped as a default, an error once the user wrote it
    (also when the plan for that very config is cached); what the stratified draw sees."""
    from cxratlas.ingest.columns import ManifestNames, left_out_note

    folder, _ = archive
    cfg = _config(folder)
    cfg["sample"].update(n=20, stratify_by=["scanner", "view_position"])
    as_default = make_plan(cfg, say=lambda _: None, user=UserConfig())
    names = ManifestNames.of(as_default.columns, as_default.attributes, [cfg["dataset"]])
    assert left_out_note(cfg, names) == (
        "defaults left out, their columns not in the manifest: sample.stratify_by ['scanner']; "
        "privacy.atlas_columns ['patient_id', 'study_id', 'manufacturer', 'sex', 'age', "
        "'study_year']"
    )
    # stratified by view alone: 10 PA and 10 AP (an unstratified draw of this seed: 11 and 9)
    views = _images(folder / "img", 40).set_index("uid")["view"]
    ledger = proposed_ledger(as_default)
    assert views[ledger["image_id"]].value_counts().to_dict() == {"PA": 10, "AP": 10}
    user = UserConfig((("mine.yaml", {"sample": {"stratify_by": ["scanner", "view_position"]}}),))
    with pytest.raises(PlanError) as err:
        make_plan(cfg, say=lambda _: None, user=user)  # the cached plan's key
    assert str(err.value).startswith(
        "sample.stratify_by (in mine.yaml): column(s) ['scanner'] are not in the manifest"
    )


def test_a_column_named_by_its_original_name_says_the_name_to_write(archive):
    folder, _ = archive
    cfg = _config(folder, keep_columns=["site"])
    cfg["sample"]["stratify_by"] = ["view"]  # renamed to view_position by dataset.columns
    cfg["analysis"]["shortcuts"]["site"] = "Site"
    layers = (
        ("u.yaml", {"sample": {"stratify_by": ["view"]}}),
        ("--config", {"analysis": {"shortcuts": {"site": "Site"}}}),
    )
    user = UserConfig(layers)
    with pytest.raises(
        PlanError,
        match=re.escape(
            "'view' is renamed to 'view_position' by dataset.columns: write 'view_position'"
        ),
    ):
        make_plan(cfg, say=lambda _: None, user=user)
    cfg["sample"]["stratify_by"] = ["view_position"]
    with pytest.raises(PlanError) as err:
        make_plan(cfg, say=lambda _: None, user=user)
    assert str(err.value).startswith(
        "analysis.shortcuts.site (in --config): column(s) ['Site'] are not in the subgroup "
        "columns (columns: ['view_position', 'dataset', 'site']); did you mean 'site'?"
    )
    with pytest.raises(
        ManifestError,
        match=re.escape(
            "column(s) ['file'] (dataset.keep_columns) not found; columns are ['image_id', "
            "'path', 'view_position', 'covid', 'site', 'tb']; 'file' is renamed to 'path'"
        ),
    ):
        make_plan(_config(folder, keep_columns=["file"]), say=lambda _: None)


def test_label_noise_picks_the_most_balanced_finding_or_says_why():
    from cxratlas.analysis.label_noise import choose_finding

    ids = pd.Index([f"i{k}" for k in range(100)])
    m = pd.DataFrame(
        {"rare": pd.array([1] * 3 + [0] * 97, dtype="Int8"),
         "half": pd.array([1] * 40 + [0] * 60, dtype="Int8"),
         "unknown": pd.array([pd.NA] * 100, dtype="Int8")}, index=ids,
    )  # fmt: skip
    assert choose_finding(m, ("rare", "half", "unknown"), ids, 10)[0] == "half"
    finding, why = choose_finding(m, ("rare", "unknown"), ids, 10)
    assert finding is None and "the most balanced, rare, has 3" in why
    assert choose_finding(m, (), ids, 10) == (None, "the manifest has no finding column")


def test_attribute_values_are_tested_like_findings():
    from cxratlas.analysis.enrichment import attribute_indicators, enrichment

    meta = pd.DataFrame({"site": ["a"] * 30 + ["b"] * 30 + ["rare"] * 2})
    ind = attribute_indicators(meta, ("site",))
    assert list(ind.columns) == ["site=a", "site=b"]  # 2 images: too few to test
    cluster = np.arange(62) < 30  # the cluster is exactly site a
    table = enrichment({"c0": cluster}, pd.DataFrame(index=meta.index), ind)
    row = table.set_index("finding").loc["site=a"]
    assert row["kind"] == "attribute" and row["prevalence_in"] == 1.0
    assert row["prevalence_out"] == 0.0 and row["p_adjusted"] < 1e-10


def test_pixel_pca_fits_what_a_small_sample_allows(tmp_path):
    from cxratlas.embed.models.pixels import PixelEmbedder

    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)) for _ in range(37)]
    entry = {"kind": "pixels", "image_size": 64, "pca": 48}
    PixelEmbedder.fit("p", entry, imgs, 0, tmp_path / "state.npz")
    state = np.load(tmp_path / "state.npz")
    assert state["components"].shape == (37, 64 * 64)
    assert int(state["requested"]) == 48 and int(state["fit_images"]) == 37
    model = PixelEmbedder("p", entry, str(tmp_path / "state.npz"))
    assert model.dim == 37
    assert model.embed(np.stack([model.preprocess(i) for i in imgs[:4]])).shape == (4, 37)


def test_the_sample_holds_what_embedding_reads_and_no_metadata(archive):
    folder, table = archive
    table.assign(pid=[f"p{i // 2}" for i in range(40)]).to_csv(folder / "m.csv", index=False)
    cfg = _config(folder)
    cfg["dataset"]["columns"]["patient_id"] = "pid"
    plan_and_commit(cfg)
    assert list(pd.read_parquet(SAMPLE_PATH).columns) == [
        "image_id",
        "path",
        "rel_path",
        "sample_rank",
        "shard",
        "shard_rev",
    ]
    stamp = os.stat(SAMPLE_PATH).st_mtime_ns
    cfg["privacy"]["salt"] = "another"  # new patient hashes: not a new sample
    plan_and_commit(cfg)
    assert os.stat(SAMPLE_PATH).st_mtime_ns == stamp
    # a folder of precomputed vectors laid out by patient needs the (hashed) id in the sample
    from cxratlas.embed.models import sample_columns

    cfg["models"]["cxr_foundation"] = {"kind": "precomputed", "source": str(folder),
                                       "path_template": "p{patient_id}/{image_id}.npy"}  # fmt: skip
    assert sample_columns(cfg["models"]) == ("patient_id",)
    plan_and_commit(cfg, extra=sample_columns(cfg["models"]))
    assert "patient_id" in pd.read_parquet(SAMPLE_PATH).columns


def test_redrawn_demo_images_rewrite_the_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["dataset"]["demo"].update(n_images=40)
    cfg["sample"]["n"] = None
    first = plan_and_commit(cfg)
    stamp = os.stat(SAMPLE_PATH).st_mtime_ns
    again = plan_and_commit(cfg)
    assert (again.sample_sha, again.epoch, again.shard_revs) == (
        first.sample_sha,
        first.epoch,
        first.shard_revs,
    )
    assert again.changes["added"] == 0 and first.changes["added"] == 40
    assert os.stat(SAMPLE_PATH).st_mtime_ns == stamp
    cfg["dataset"]["demo"]["image_size"] = 128  # same ids and paths, other pixels
    redrawn = plan_and_commit(cfg)
    # a new epoch: every shard's key (a rule param) changes, so every shard is embedded again
    assert redrawn.epoch != first.epoch and redrawn.shards == first.shards
    assert all(redrawn.shard_key(s) != first.shard_key(s) for s in first.shards)
    (tmp_path / "results/sample/plan.json").write_text('{"key": "x", "from": "another version"}')
    assert plan_and_commit(cfg).n_images == 40  # an unreadable plan is remade


def test_a_sampled_image_whose_file_is_gone_stays_in_the_sample(archive, caplog):
    """A mount that is down (or a file moved for a while) is not a withdrawn row: the image keeps
    its place and shard, so its vectors are not pruned; a new row without its file is dropped."""
    folder, table = archive
    cfg = _config(folder)
    first = plan_and_commit(cfg)
    ledger = pd.read_parquet(SAMPLE_PATH)
    gone = ledger.loc[ledger["shard"] == 1, "path"].tolist()
    for p in gone:
        os.rename(p, p + ".away")
    extra = _images(folder / "img2", 4).assign(uid=lambda d: "new" + d["uid"])
    extra["file"] = "../img2/" + extra["file"]
    os.remove(folder / "img2/0.png")  # a new row whose file is missing: dropped as ever
    pd.concat([table, extra]).to_csv(folder / "m.csv", index=False)
    again = plan_and_commit(cfg)
    now = pd.read_parquet(SAMPLE_PATH)
    kept = now.set_index("image_id").loc[ledger["image_id"], "shard"]
    assert (kept.to_numpy() == ledger["shard"].to_numpy()).all()  # nobody moved or left
    assert "newimg0" not in set(now["image_id"]) and {"newimg1", "newimg2"} <= set(now["image_id"])
    assert again.changes["removed"] == 0 and first.n_images == 40
    assert "image file(s) of the shared sample not found" in caplog.text
