"""Subgroups brought back in: selections read in every format Embedding Atlas exports, queries,
the plan's checks, compactness against random sets and AUROC inside vs outside on planted
truth, and one subgroup analysed on the shared demo run (the browser round trip is in
test_viewer.py)."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from cxratlas.analysis.subgroup_members import (
    SubgroupError,
    SubgroupSpec,
    members,
    query_members,
    read_selection,
)
from cxratlas.analysis.subgroup_plan import check_subgroups

IDS = ["00012", "img/7", "b-3", "0x9", "ü-5"]  # leading zeros, slashes, non-ASCII: kept exactly


def _export(tmp_path, suffix: str, ids=IDS, column="image_id"):
    """A selection as Embedding Atlas's server writes it (`handle_selection`: pandas to_*),
    every column of the rows, a thumbnail's bytes among them."""
    thumbnails = [b'\x89PNG\r\n,"x' + bytes([i]) for i in range(len(ids))]  # commas, quotes
    frame = pd.DataFrame({"__row_index__": range(len(ids)), column: ids,
                          "age": [61.0, None, 80, 23, 45], "thumbnail": thumbnails})  # fmt: skip
    path = tmp_path / f"selection{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".json":
        frame.drop(columns="thumbnail").to_json(path, orient="records", index=False)
    elif suffix == ".jsonl":
        frame.drop(columns="thumbnail").to_json(path, orient="records", lines=True, index=False)
    else:
        path.write_text("# lateral films\n" + "\n".join(ids) + "\n\n")
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json", ".jsonl", ".txt"])
def test_every_export_format_gives_the_same_ids(tmp_path, suffix):
    path = _export(tmp_path, suffix)
    assert list(read_selection(SubgroupSpec("s", file=str(path)))) == IDS


def test_another_id_column_and_repeated_ids(tmp_path):
    path = _export(tmp_path, ".csv", ids=["a", "b", "a", "c", "b"], column="dicom_id")
    spec = SubgroupSpec.of("s", {"file": str(path), "id_column": "dicom_id"})
    assert list(read_selection(spec)) == ["a", "b", "c"]


def _written(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "gone.parquet", r"subgroups\.s: selection file .*gone.parquet not found"),
        (lambda p: _written(p / "s.xlsx", "x"), r"subgroups\.s: .*s.xlsx is not a selection file"),
        (lambda p: _export(p, ".parquet", column="id"),
         r"subgroups\.s: .*has no column 'image_id' \(its columns: \['__row_index__', 'id'"),
        (lambda p: _written(p / "e.txt", "\n# none\n"), r"subgroups\.s: .*e.txt holds no image"),
        (lambda p: _written(p / "b.json", "{not json"), r"subgroups\.s: .*b.json is not valid"),
        (lambda p: _written(p / "o.json", '{"image_id": "a"}'), "is not a list of records"),
    ],
)  # fmt: skip
def test_a_bad_selection_file_is_named(tmp_path, make, message):
    with pytest.raises(SubgroupError, match=message):
        read_selection(SubgroupSpec("s", file=str(make(tmp_path))))


def _manifest():
    return pd.DataFrame(
        {
            "view_position": pd.array(["AP", "AP", "PA", "LATERAL", None, "AP"], "string"),
            "age": pd.array([85, None, 90, 81, 88, 79], "Float32"),
            "effusion": pd.array([1, 0, None, 1, -1, 1], "Int8"),
        },
        index=pd.Index([f"i{i}" for i in range(6)], name="image_id"),
    )


def test_a_query_selects_on_canonical_columns_and_unknown_values_are_false():
    frame = _manifest()
    old_ap = SubgroupSpec("old_ap", query='view_position == "AP" and age >= 80')
    assert list(members(old_ap, frame)) == ["i0"]  # i1's age is unknown, i4's view
    assert list(members(SubgroupSpec("e", query="effusion == 1"), frame)) == ["i0", "i3", "i5"]
    assert list(members(SubgroupSpec("b", query='age_band == "80+"'), frame)) == [
        "i0", "i2", "i3", "i4"]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("site == 'A'", r"subgroups\.q: query .* names an unknown column .*'site'.*"
                        r"columns are \['view_position', 'age', 'effusion', 'age_band'\]"),
        ("age >", r"subgroups\.q: query 'age >' cannot be evaluated \(SyntaxError"),
        ("age + 1", r"gives Float32 values, not true or false per image"),
        ("@secret > 1", "names an unknown column"),  # no variable of ours leaks into a query
    ],
)  # fmt: skip
def test_a_bad_query_is_named(query, message):
    from cxratlas.analysis.subgroup_members import query_frame

    with pytest.raises(SubgroupError, match=message):
        query_members(SubgroupSpec("q", query=query), query_frame(_manifest()))


def test_the_plan_check_names_ids_outside_the_sample_and_empty_or_whole_subgroups(tmp_path):
    sample = pd.Index([f"s{i}" for i in range(50)])
    (tmp_path / "ok.txt").write_text("s1\ns2\n")
    (tmp_path / "foreign.txt").write_text("\n".join(["s1", *[f"x{i}" for i in range(12)]]))
    (tmp_path / "all.txt").write_text("\n".join(sample))
    ok = SubgroupSpec("ok", file=str(tmp_path / "ok.txt"))
    rows = pd.DataFrame({"age": np.arange(50.0)}, index=sample)
    assert check_subgroups([ok, SubgroupSpec("young", query="age < 10")], sample,
                           lambda: rows) == {"ok": 2, "young": 10}  # fmt: skip
    with pytest.raises(SubgroupError, match=r"subgroups\.foreign: 12 of the 13 image id\(s\) in "
                       r".*foreign.txt are not in the shared sample, e\.g\. \['x0', 'x1', 'x2', "
                       r"'x3', 'x4'\]"):  # fmt: skip
        check_subgroups([SubgroupSpec("foreign", file=str(tmp_path / "foreign.txt"))], sample,
                        lambda: rows)  # fmt: skip
    with pytest.raises(SubgroupError, match=r"subgroups\.none: query: age > 99 selects none of "
                                            r"the 50 sampled images"):  # fmt: skip
        check_subgroups([SubgroupSpec("none", query="age > 99")], sample, lambda: rows)
    with pytest.raises(SubgroupError, match="holds every one of the 50 sampled images"):
        check_subgroups([SubgroupSpec("all", file=str(tmp_path / "all.txt"))], sample, None)


def test_a_selection_saved_before_a_prune_stops_with_a_hint_or_drops_what_left(tmp_path):
    """Three of a saved selection's ten images have left the archive since: the plan stops
    naming the setting, or with `absent: drop` goes on with the seven, saying what it left out;
    a selection left with none stops either way."""
    sample = pd.Index([f"s{i}" for i in range(50)])
    saved = tmp_path / "saved.txt"
    saved.write_text("\n".join([*(f"s{i}" for i in range(7)), "gone1", "gone2", "gone3"]))
    with pytest.raises(
        SubgroupError,
        match=r"3 of the 10 .* left the archive since\? To leave "
        r"them out, set `subgroups\.saved\.absent: drop`",
    ):
        check_subgroups([SubgroupSpec("saved", file=str(saved))], sample, None)
    said = []
    spec = SubgroupSpec.of("saved", {"file": str(saved), "absent": "drop"})
    assert check_subgroups([spec], sample, None, said.append) == {"saved": 7}
    assert said == [
        f"subgroups.saved: 3 of the 10 image id(s) in {saved} are not in the shared "
        "sample, e.g. ['gone1', 'gone2', 'gone3']; left out (`absent: drop`)"
    ]
    saved.write_text("gone1\ngone2\n")
    with pytest.raises(SubgroupError, match="selects none of the 50 sampled images"):
        check_subgroups([spec], sample, None, said.append)


def test_a_query_on_dicom_header_columns_is_left_to_the_ingest_job():
    """The plan reads no DICOM header: a query on a column only headers fill names a known
    column, and selecting nothing yet is a warning, not a stop."""
    from cxratlas.analysis.subgroup_plan import _with_dicom_columns

    sample = pd.Index(["a", "b"])
    rows = pd.DataFrame({"age": [50.0, 60.0]}, index=sample)
    said = []
    spec = SubgroupSpec("dx", query='modality == "DX" and age > 55')
    planned = _with_dicom_columns(rows, [{"dicom_tags": True}])
    sizes = check_subgroups([spec], sample, lambda: planned, said.append)
    assert sizes == {"dx": 0} and "read from DICOM headers by the ingest job" in said[0]
    with pytest.raises(SubgroupError, match="names an unknown column"):  # no DICOM dataset
        check_subgroups([spec], sample, lambda: rows)


def test_the_schema_takes_a_file_an_entry_or_a_query_and_nothing_else(repo):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    def config(subgroups):
        cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
        return {**cfg, "subgroups": subgroups}

    schema = str(repo / "src/cxratlas/schemas/config.schema.yaml")
    drains = {"file": "d.csv", "id_column": "x", "absent": "drop"}
    validate(config({"lateral": "sel.parquet", "drains-2": drains,
                     "old_ap": {"query": 'view_position == "AP"'}}), schema)  # fmt: skip
    for bad in ({"two words": "a.csv"}, {"a": {"file": "a.csv", "query": "age > 1"}},
                {"a": {"query": "age > 1", "id_column": "x"}}, {"a": ""},
                {"a": {"file": "a.csv", "absent": "ignore"}}):  # fmt: skip
        with pytest.raises(WorkflowError):
            validate(config(bad), schema)


# ---- where a subgroup sits: planted truth ----


def _blobs(n_per=200, seed=0):
    """Three well-apart blobs in 16-d (the embedding) with a 2-D map of the same blobs."""
    from sklearn.neighbors import NearestNeighbors

    from cxratlas.analysis.subgroup_placement import ModelSpace

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (3, 16))
    X = np.concatenate([c + rng.normal(0, 1, (n_per, 16)) for c in centres])
    knn = NearestNeighbors(n_neighbors=16).fit(X).kneighbors(X, return_distance=False)
    blob = np.repeat(np.arange(3), n_per)
    xy = X[:, :2]
    names = {f"c{b}": f"c{b} · blob {b}" for b in range(3)}
    return ModelSpace("m", knn[:, 1:], xy, np.array([f"c{b}" for b in blob]), names), blob


def test_statistics_match_their_definitions():
    from scipy.spatial.distance import pdist

    from cxratlas.analysis.subgroup_placement import knn_share, spread

    neighbours = np.array([[1, 2], [0, 3], [0, 1], [2, 1]])
    mask = np.array([True, True, False, False])
    assert knn_share(neighbours, mask) == pytest.approx((1 / 2 + 1 / 2) / 2)
    xy = np.random.default_rng(1).normal(size=(30, 2))
    some = np.zeros(30, bool)
    some[[0, 3, 7, 8, 20]] = True
    assert spread(xy, some) == pytest.approx(np.sqrt(np.mean(pdist(xy[some]) ** 2)))


def test_a_subgroup_the_space_gathers_is_found_and_a_random_one_is_not():
    from cxratlas.analysis.subgroup_placement import cluster_table, placement

    space, blob = _blobs()
    one_blob = blob == 1
    row = placement(space, one_blob, draws=200, seed=0)
    assert row["knn_share"] == 1.0 and row["knn_p"] == pytest.approx(1 / 201)  # the floor
    assert row["knn_null_mean"] == pytest.approx(199 / 599, abs=0.02)
    assert row["spread_ratio"] < 0.5 and row["spread_p"] == pytest.approx(1 / 201)
    assert row["top_cluster"] == "c1 · blob 1" and row["top_cluster_share"] == 1.0
    assert row["clusters_for_half"] == 1 and row["noise_share"] == 0.0
    random = np.zeros(len(blob), bool)
    random[np.random.default_rng(5).choice(len(blob), 200, replace=False)] = True
    row = placement(space, random, draws=200, seed=0)
    assert row["knn_p"] > 0.05 and row["spread_p"] > 0.05 and abs(row["knn_z"]) < 2.5
    clusters = cluster_table(space, one_blob, "s")
    assert list(clusters["cluster"]) == ["c1"] and clusters["share_of_cluster"].iloc[0] == 1.0
    assert clusters["p_adjusted"].iloc[0] < 1e-50  # the enrichment test, BH over clusters


# ---- classifiers inside against outside: planted truth ----


def _classifier(n=2000, seed=0):
    """2 images a patient; scores that rank perfectly-ish outside the first 200 patients and
    at random inside them."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"i{i}" for i in range(n)])
    patients = pd.Series([f"p{i // 2}" for i in range(n)], index=ids)
    y = rng.random(n) < 0.3
    inside = np.arange(n) < 400
    score = np.where(inside, rng.normal(size=n), y * 4.0 + rng.normal(0, 0.5, n))
    table = pd.DataFrame({"classifier": "vendor", "finding": "effusion", "image_id": ids,
                          "label": y.astype("int8"), "score": score})  # fmt: skip
    return table, ids[inside], patients, y, score, inside


def test_auroc_inside_outside_bnsp_and_bpsn_on_a_planted_failure():
    from sklearn.metrics import roc_auc_score

    from cxratlas.analysis.subgroup_classifiers import PerformanceSettings, subgroup_performance

    table, inside_ids, patients, y, score, inside = _classifier()
    s = PerformanceSettings(min_group=10, bootstrap=300, seed=0)
    row = subgroup_performance([table], inside_ids, patients, s).iloc[0]
    assert row["auroc_in"] == pytest.approx(roc_auc_score(y[inside], score[inside]))
    assert row["auroc_out"] == pytest.approx(roc_auc_score(y[~inside], score[~inside]))
    bnsp = (inside & y) | (~inside & ~y)
    bpsn = (inside & ~y) | (~inside & y)
    assert row["bnsp"] == pytest.approx(roc_auc_score(y[bnsp], score[bnsp]))
    assert row["bpsn"] == pytest.approx(roc_auc_score(y[bpsn], score[bpsn]))
    assert 0.4 < row["auroc_in"] < 0.6 and row["auroc_out"] > 0.99
    assert row["delta_high"] < 0 and row["delta_low"] < row["delta"] < row["delta_high"]
    for m in ("auroc_in", "auroc_out", "bnsp", "bpsn"):
        assert row[f"{m}_low"] <= row[m] <= row[f"{m}_high"], m
    assert row["status"] == "scored" and row["reason"] == ""
    assert (row["n_in"], row["positives_in"]) == (400, int(y[inside].sum()))


def test_the_four_figures_from_one_pass_equal_each_scored_alone_ties_included():
    from cxratlas.analysis.metrics import auroc_weighted
    from cxratlas.analysis.probes import resample_weights
    from cxratlas.analysis.subgroup_classifiers import PARTS, part_aurocs

    rng = np.random.default_rng(2)
    n = 300
    y, inside = rng.random(n) < 0.3, rng.random(n) < 0.2
    for score in (np.sort(rng.normal(size=n)), np.sort(rng.integers(0, 5, n)).astype(float)):
        w = next(resample_weights(np.arange(n) // 2, 20, 0))
        got = part_aurocs(y, score, inside, w)
        part = {"in": inside, "out": ~inside}
        for metric, (p, q) in PARTS.items():
            r = (y & part[p]) | (~y & part[q])
            assert got[metric] == pytest.approx(auroc_weighted(y[r], score[r], w[:, r])), metric


def test_a_subgroup_of_one_class_is_scored_by_bnsp_alone():
    from sklearn.metrics import roc_auc_score

    from cxratlas.analysis.subgroup_classifiers import PerformanceSettings, subgroup_performance

    table, _, patients, y, score, inside = _classifier()
    drains = inside & y  # a stratum of positives only, ranked badly
    s = PerformanceSettings(min_group=10, bootstrap=200, seed=0)
    row = subgroup_performance([table], table["image_id"][drains], patients, s).iloc[0]
    assert np.isnan(row["auroc_in"]) and np.isnan(row["bpsn"]) and np.isnan(row["delta"])
    sel = drains | ~y
    assert row["bnsp"] == pytest.approx(roc_auc_score(y[sel], score[sel]))
    assert row["bnsp_high"] < row["auroc_out"]  # its positives rank below the others'
    assert row["status"] == "scored"
    assert "auroc_in: 0 negative inside image(s)" in row["reason"]
    assert "bpsn: 0 negative inside image(s)" in row["reason"]


def test_too_few_to_score_is_a_skipped_row_with_its_counts():
    from cxratlas.analysis.subgroup_classifiers import PerformanceSettings, subgroup_performance

    table, _, patients, *_ = _classifier(n=200)
    few = table["image_id"][:6]
    row = subgroup_performance([table], few, patients, PerformanceSettings(bootstrap=50)).iloc[0]
    assert row["status"] == "skipped" and row["n_in"] == 6
    assert row["reason"].startswith("too few to score (10 of each class needed")


# ---- figures ----


def test_the_contact_sheet_captions_every_image():
    from PIL import Image

    from cxratlas.analysis.subgroup_report import captioned_sheet

    buf = io.BytesIO()
    Image.new("L", (96, 96), 128).save(buf, format="PNG")
    items = [(buf.getvalue(), ["a-very-long-image-id-0123456789", "AP · F · 81", "effusion"])] * 10
    sheet = Image.open(io.BytesIO(captioned_sheet(items, "title", columns=8)))
    assert sheet.size == (8 * 102 + 6, 24 + 2 * (96 + 3 * 13 + 6))
    grey = np.asarray(sheet)
    assert (grey[24:120, 6:102] == 128).all()  # the first thumbnail where it belongs
    assert (grey[121:159, 6:102] < 128).any()  # its caption under it


# ---- on the shared demo run ----


@pytest.fixture(scope="module")
def lateral(demo_run, tmp_path_factory):
    """The demo run's lateral films analysed as a subgroup (a selection exported as CSV)."""
    from cxratlas.analysis.subgroup_report import SubgroupSettings, run_subgroup

    atlas = pd.read_parquet(demo_run / "results/atlas/atlas.parquet")
    out = tmp_path_factory.mktemp("lateral")
    atlas[atlas["view_position"] == "LATERAL"].to_csv(out / "lateral.csv", index=False)
    spec = SubgroupSpec("lateral", file=str(out / "lateral.csv"))
    inputs = {"atlas": str(demo_run / "results/atlas/atlas.parquet"),
              "manifest": str(demo_run / "results/manifest.parquet"),
              "probe_scores": str(demo_run / "results/analysis/probes/scores.parquet"),
              "classifiers": []}  # fmt: skip
    names = ["members", "table1", "placement", "clusters", "performance", "enrichment",
             "table1_tsv", "placement_tsv", "clusters_tsv", "performance_tsv", "maps",
             "performance_figure", "table1_figure", "sheet"]  # fmt: skip
    files = {n: str(out / f"{n}.{'png' if n in ('maps', 'sheet') or 'figure' in n else 'x'}")
             for n in names}  # fmt: skip
    result = run_subgroup(spec, inputs, SubgroupSettings(random_sets=200, bootstrap=200), files)
    return atlas, result, files


@pytest.mark.workflow
@pytest.mark.smoke  # reads the shared demo run: seconds
def test_a_selection_on_the_demo_run_is_analysed_against_the_rest(lateral):
    from PIL import Image

    from cxratlas.analysis.subgroup_report import subgroup_source

    atlas, result, files = lateral
    expected = set(atlas.loc[atlas["view_position"] == "LATERAL", "image_id"])
    assert set(result.members["image_id"]) == expected and result.members["in_atlas"].all()
    assert subgroup_source(files["members"]).endswith("lateral.csv")
    view = result.table1[result.table1["variable"] == "view_position"].set_index("level")
    assert view.at["LATERAL", "members"] == 1.0 and view.at["LATERAL", "rest"] == 0.0
    assert view.at["LATERAL", "n_members"] == len(expected) and view["differs"].all()
    # planted: the pixel baselines gather the lateral films (a 100 % lateral cluster)
    placement = result.placement.set_index("model")
    assert list(placement.index) == ["pixels_32", "pixels_64_pca"]
    assert placement["knn_p"].tolist() == pytest.approx([1 / 201] * 2)  # the floor
    assert (placement["knn_share"] > 0.8).all() and (placement["spread_ratio"] < 1).all()
    assert placement["top_cluster"].str.contains("LATERAL").all()
    enriched = result.enrichment.set_index("finding")
    assert enriched.at["view_position=LATERAL", "prevalence_in"] == 1.0
    perf = result.performance
    assert set(perf["classifier"]) == {"probe_pixels_32", "probe_pixels_64_pca"}
    scored = perf[perf["auroc_in"].notna()]
    assert len(scored) and (scored["auroc_in_low"] <= scored["auroc_in"]).all()
    for table in result.tables().values():
        assert (table["subgroup"] == "lateral").all()
    for name in ("maps", "performance_figure", "table1_figure", "sheet"):
        assert Image.open(files[name]).size[0] > 400, name
    assert pd.read_csv(files["performance_tsv"], sep="\t").shape[0] == len(perf)


@pytest.mark.workflow
@pytest.mark.smoke  # reads the shared demo run: seconds
def test_random_images_of_the_demo_run_are_not_gathered(demo_run, tmp_path):
    from cxratlas.analysis.subgroup_report import Study, SubgroupSettings, analyse_subgroup

    study = Study.load(str(demo_run / "results/atlas/atlas.parquet"),
                       str(demo_run / "results/manifest.parquet"))  # fmt: skip
    from cxratlas.analysis.subgroup_report import _size

    ids = study.ids[np.random.default_rng(3).choice(len(study.ids), 60, replace=False)]
    # saved before 3 of its images left the archive: `absent: drop` (the plan left them out)
    (tmp_path / "random.txt").write_text("\n".join([*ids, "gone-1", "gone-2", "gone-3"]))
    spec = SubgroupSpec("random", file=str(tmp_path / "random.txt"), absent="drop")
    result = analyse_subgroup(spec, study, [], SubgroupSettings(random_sets=200))
    assert (result.placement["knn_p"] > 0.05).all(), result.placement
    assert result.performance.empty
    assert result.members["in_atlas"].sum() == 60 and len(result.members) == 63
    row = result.placement.iloc[0]
    assert (row.members, row.listed) == (60, 63)
    assert _size(row) == "60 of its 63 images: 3 not in the atlas"


@pytest.mark.workflow
@pytest.mark.smoke  # reads the shared demo run: seconds
def test_the_summary_lines_name_the_gathering_model_and_a_gap(lateral):
    from cxratlas.analysis.subgroup_report import subgroup_lines

    _, result, files = lateral
    lines = subgroup_lines([files["placement"]], [files["performance"]])
    assert len(lines) == 1 and lines[0].startswith(f"**lateral** ({result.mask.sum()} images)")
    assert "gathered in pixels_" in lines[0] and "LATERAL" in lines[0]
    gaps = result.performance[(result.performance["delta_high"] < 0)
                              | (result.performance["delta_low"] > 0)]  # fmt: skip
    assert ("inside against" in lines[0]) == bool(len(gaps))


@pytest.mark.workflow
def test_the_plan_checks_subgroups_and_plans_only_their_jobs(repo, demo_run, tmp_path):
    from workflow_runs import job_stats, snakemake

    atlas = pd.read_parquet(demo_run / "results/atlas/atlas.parquet", columns=["image_id"])
    (tmp_path / "some.txt").write_text("\n".join(atlas["image_id"][:30]))
    (tmp_path / "foreign.txt").write_text("\n".join([*atlas["image_id"][:3], "elsewhere-1"]))
    before = {p: p.stat().st_mtime_ns for p in (demo_run / "results").rglob("*")}

    def dry(subgroups):
        extra = tmp_path / "subgroups.yaml"
        extra.write_text(yaml.safe_dump({"subgroups": subgroups}))
        return snakemake(repo, demo_run, "-n", "--configfile", str(demo_run / "test.yaml"),
                         str(extra), check=False)  # fmt: skip

    proc = dry({"some": str(tmp_path / "some.txt"), "old": {"query": "age >= 70"}})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_stats(proc.stdout) == {"subgroup": 2, "subgroups_overview": 1, "summary": 1,
                                      "all": 1}  # fmt: skip
    said = re.search(r"subgroups: (.*)", proc.stdout + proc.stderr).group(1)
    assert "some 30 image(s)" in said and "old " in said
    proc = dry({"old": {"query": "site == 'A' and age >= 70"}})
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "stopped before any job" in said
    assert "subgroups.old: query \"site == 'A' and age >= 70\" names an unknown column" in said
    proc = dry({"far": str(tmp_path / "foreign.txt")})
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "subgroups.far: 1 of the 4 image id(s)" in said and "elsewhere-1" in said
    assert {p: p.stat().st_mtime_ns for p in (demo_run / "results").rglob("*")} == before


def test_the_settings_default_to_the_default_config(repo):
    from cxratlas.analysis.subgroup_report import SubgroupSettings

    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    assert SubgroupSettings.from_config(cfg["analysis"]) == SubgroupSettings()
    assert cfg["subgroups"] == {}  # none unless named
