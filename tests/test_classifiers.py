"""Classifiers in: every mistake in a predictions file is named (file, row, key) before any job,
and a good file becomes the long table the slices and the subgroup analysis read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cxratlas.analysis.probes import LabelPolicy
from cxratlas.io import CLASSIFIER_COLUMNS, by_classifier, classifier_of, write_classifier
from cxratlas.slices.classifiers import (
    ClassifierError,
    ClassifierSpec,
    check_classifiers,
    check_predictions,
    classifier_specs,
    normalise_predictions,
    probe_classifier,
)

SAMPLE = pd.Index([f"img{i}" for i in range(6)])
MANIFEST_IDS = pd.Index([*SAMPLE, "img6", "img7"])  # two images of the archive not sampled
FINDINGS = ("pneumonia", "effusion")


def predictions(tmp_path, rows: dict | None = None, name: str = "preds.csv") -> ClassifierSpec:
    """A vendor's file: ids in `case_id`, scores in p_pna; `rows` replaces cells by row."""
    df = pd.DataFrame({"case_id": [*SAMPLE, "img6"],
                       "p_pna": ["0.9", "0.1", "0.8", "0.3", "0.2", "0.7", "0.5"]})  # fmt: skip
    for row, values in (rows or {}).items():
        for column, value in values.items():
            df.loc[row, column] = value
    path = tmp_path / name
    if name.endswith(".parquet"):
        df.assign(p_pna=pd.to_numeric(df["p_pna"], errors="coerce")).to_parquet(path)
    else:
        df.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return ClassifierSpec("vendor", str(path), "case_id", {"pneumonia": "p_pna"})


def check(spec):
    return check_predictions(spec, FINDINGS, SAMPLE, lambda: MANIFEST_IDS)


@pytest.mark.parametrize(
    "rows, spec_change, message",
    [
        ({2: {"p_pna": "high"}}, {}, "line 4, column 'p_pna': score 'high' is not a finite number"),
        ({2: {"p_pna": "inf"}}, {}, "line 4, column 'p_pna': score 'inf'"),
        ({6: {"case_id": "img99"}}, {}, "line 8: image id 'img99' is not in the manifest"),
        ({3: {"p_pna": ""}}, {}, "1 sampled image(s) have no score, e.g. ['img3 (line 5)']"),
        ({5: {"case_id": "img6"}}, {}, "image id 'img6' has two rows (line 7, line 8)"),
        ({1: {"case_id": ""}}, {}, "line 3: empty id in column 'case_id'"),
        ({}, {"findings": {"pneumonitis": "p_pna"}},
         "classifiers.vendor.findings: 'pneumonitis' is not a finding"),
        ({}, {"findings": {"pneumonia": "p_pneumonia"}},
         "classifiers.vendor.findings.pneumonia: column 'p_pneumonia' is not in"),
        ({}, {"id_column": "image_id"}, "classifiers.vendor.id_column: 'image_id' is not a column"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_its_file_and_row(tmp_path, rows, spec_change, message):
    spec = predictions(tmp_path, rows)
    spec = ClassifierSpec(**{**spec.__dict__, **spec_change})
    with pytest.raises(ClassifierError) as err:
        check(spec)
    assert message in str(err.value)
    assert "preds.csv" in str(err.value) or "classifiers.vendor" in str(err.value)


def test_a_sampled_image_without_a_row_is_named(tmp_path):
    spec = predictions(tmp_path)
    with pytest.raises(ClassifierError, match=r"1 of the 7 sampled images have no row.*img9"):
        check_predictions(spec, FINDINGS, SAMPLE.append(pd.Index(["img9"])), lambda: MANIFEST_IDS)


def test_a_classifier_scored_on_part_of_the_sample_is_audited_there_when_asked(tmp_path, caplog):
    """`unscored: skip`: the sampled images without a row are left out of its audit with a
    warning (its test split), not a stop; the stop's message names the setting; a file that
    scores none of the sample still stops."""
    spec = predictions(tmp_path)
    sample = SAMPLE.append(pd.Index(["img9"]))  # img9: sampled, not in its file
    with pytest.raises(ClassifierError, match=r"set classifiers\.vendor\.unscored: skip"):
        check_predictions(spec, FINDINGS, sample, lambda: MANIFEST_IDS.append(pd.Index(["img9"])))
    skip = ClassifierSpec(**{**spec.__dict__, "unscored": "skip"})
    with caplog.at_level("WARNING"):
        check_predictions(skip, FINDINGS, sample, lambda: MANIFEST_IDS.append(pd.Index(["img9"])))
    assert (
        "1 of the 7 sampled images have no row, e.g. ['img9']; vendor audits the 6" in caplog.text
    )
    manifest = pd.DataFrame({"pneumonia": pd.array([1, 0, 1, 0, 0, 1, 1, 0, 1], dtype="Int8")},
                            index=pd.Index([*MANIFEST_IDS, "img9"], name="image_id"))  # fmt: skip
    table = normalise_predictions(skip, manifest, sample)
    assert table["image_id"].tolist() == list(SAMPLE)  # img9 left out, no error
    with pytest.raises(ClassifierError, match="scores none of them"):
        check_predictions(
            skip, FINDINGS, pd.Index(["img9"]), lambda: pd.Index(["img9", *MANIFEST_IDS])
        )


@pytest.mark.parametrize("name", ["preds.xlsx", "missing.csv"])
def test_a_file_that_cannot_be_read_is_named(tmp_path, name):
    path = tmp_path / name
    if name.endswith("xlsx"):
        path.write_bytes(b"PK\x03\x04")
    spec = ClassifierSpec("vendor", str(path), "case_id", {"pneumonia": "p_pna"})
    with pytest.raises(ClassifierError, match=rf"classifiers.vendor.predictions: .*{name}"):
        check(spec)


@pytest.mark.parametrize("name", ["preds.csv", "preds.tsv", "preds.parquet"])
def test_csv_tsv_and_parquet_read_alike(tmp_path, name):
    pred = check(predictions(tmp_path, name=name))
    assert pred["image_id"].tolist() == [*SAMPLE, "img6"]
    assert pred["pneumonia"].tolist() == [0.9, 0.1, 0.8, 0.3, 0.2, 0.7, 0.5]


def test_the_manifest_is_read_only_when_ids_fall_outside_the_sample(tmp_path):
    spec = predictions(tmp_path)
    asked = []
    everything = MANIFEST_IDS[:-1]  # a sample that holds every id of the file
    check_predictions(spec, FINDINGS, everything, lambda: asked.append(1) or MANIFEST_IDS)
    assert asked == []  # all of its ids are sampled: no second read of the archive
    check(spec)  # img6 is not sampled: the manifest is asked, and knows it
    assert asked == []
    check_predictions(spec, FINDINGS, SAMPLE, lambda: asked.append(1) or MANIFEST_IDS)
    assert asked == [1]


def test_a_checked_file_is_not_read_again_until_it_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = predictions(tmp_path)
    cfg = {"models": {"m": {}}, "classifiers": {"vendor": {
        "predictions": spec.predictions, "id_column": "case_id",
        "findings": {"pneumonia": "p_pna"}, "threshold": None}}}  # fmt: skip
    reads = []

    def sample():
        reads.append(1)
        return SAMPLE

    check_classifiers(cfg, FINDINGS, sample, lambda: MANIFEST_IDS, "sha")
    check_classifiers(cfg, FINDINGS, sample, lambda: MANIFEST_IDS, "sha")
    assert len(reads) == 1
    predictions(tmp_path, {2: {"p_pna": "x"}})  # the file changes: checked again, and refused
    with pytest.raises(ClassifierError, match="score 'x'"):
        check_classifiers(cfg, FINDINGS, sample, lambda: MANIFEST_IDS, "sha")


def test_without_a_classifiers_section_each_probe_is_a_classifier():
    specs = classifier_specs({"models": {"a": {}, "b": {}}, "classifiers": {}})
    assert list(specs) == ["probe_a", "probe_b"] and specs["probe_b"].probe == "b"


def test_a_classifier_becomes_the_long_table_with_labels_from_the_manifest(tmp_path):
    spec = predictions(tmp_path)
    manifest = pd.DataFrame({"pneumonia": pd.array([1, 0, -1, None, 0, 1, 1, 0], dtype="Int8")},
                            index=pd.Index([*MANIFEST_IDS], name="image_id"))  # fmt: skip
    table = normalise_predictions(spec, manifest, SAMPLE)
    assert list(table.columns) == list(CLASSIFIER_COLUMNS)
    # sampled and labelled 1/0: img2 is uncertain, img3 missing, img6 not sampled
    assert table["image_id"].tolist() == ["img0", "img1", "img4", "img5"]
    assert table["label"].tolist() == [1, 0, 0, 1] and table["label"].dtype == np.int8
    assert table["score"].tolist() == [0.9, 0.1, 0.2, 0.7]
    assert (table["classifier"] == "vendor").all() and (table["finding"] == "pneumonia").all()
    # the probes' label reading: uncertain as positive adds img2, blank as negative img3
    assert len(normalise_predictions(spec, manifest, SAMPLE, LabelPolicy("positive"))) == 5
    both = normalise_predictions(spec, manifest, SAMPLE, LabelPolicy("positive", "negative"))
    assert both.set_index("image_id").loc[["img2", "img3"], "label"].tolist() == [1, 0]
    write_classifier(table, tmp_path / "vendor.parquet", "vendor")
    assert classifier_of(tmp_path / "vendor.parquet") == "vendor"
    assert by_classifier([tmp_path / "vendor.parquet"]) == {
        "vendor": str(tmp_path / "vendor.parquet")
    }
    assert pq.read_table(tmp_path / "vendor.parquet").schema.field("label").type == "int8"


def test_a_probe_is_a_classifier_of_its_own_scores():
    scores = pd.DataFrame({"finding": ["f", "f", "f", "g"], "model": ["a", "b", "a", "a"],
                           "image_id": ["i1", "i1", "i2", "i1"], "label": [1, 1, 0, 0],
                           "score": [0.3, 0.1, -0.2, 0.5], "fold": [0, 0, 1, 0]})  # fmt: skip
    table = probe_classifier(scores, "a")
    assert table[["finding", "image_id", "score"]].values.tolist() == [
        ["f", "i1", 0.3], ["f", "i2", -0.2], ["g", "i1", 0.5]]  # fmt: skip
    assert (table["classifier"] == "probe_a").all()
