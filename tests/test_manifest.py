import pandas as pd
import pytest

from cxratlas.ingest.manifest import ManifestError, ingest_manifest, normalise_label


def _write(tmp_path, rows, name="m.csv"):
    path = tmp_path / name
    df = pd.DataFrame(rows)
    if name.endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


@pytest.fixture
def images(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("L", (8, 8), i * 50).save(tmp_path / f"{i}.png")
    return tmp_path


def test_labels_normalised_by_name():
    s = pd.Series(["1.0", "0", "-1.0", "", "Positive", "uncertain", "not_mentioned", None, " yes "])
    assert normalise_label(s, "Edema", "m.csv").tolist() == [
        1,
        0,
        -1,
        pd.NA,
        1,
        -1,
        pd.NA,
        pd.NA,
        1,
    ]


def test_bad_label_value_names_row_and_column():
    with pytest.raises(ManifestError, match=r"m.csv: row 3, column 'Edema'.*'2'"):
        normalise_label(pd.Series(["1", "2"]), "Edema", "m.csv")


def test_ingest_canonical_columns_labels_and_year(images):
    path = _write(
        images,
        {
            "dicom_id": ["a", "b", "c"],
            "Path": ["0.png", "1.png", "2.png"],
            "ViewPosition": ["PA", "ap supine", "LL"],
            "StudyDate": ["2019-03-01", "20200101", ""],
            "Cardiomegaly": ["1.0", "", "-1.0"],
            "Pleural Effusion": ["0.0", "1.0", ""],
            "gt_secret": ["x", "y", "z"],
        },
    )
    df, dropped = ingest_manifest(
        path,
        image_root=images,
        columns={
            "image_id": "dicom_id",
            "path": "Path",
            "view_position": "ViewPosition",
            "study_date": "StudyDate",
        },
    )
    assert dropped.empty
    assert df["view_position"].tolist() == ["PA", "AP", "LATERAL"]
    assert df["study_year"].tolist()[:2] == [2019, 2020] and pd.isna(df["study_year"].iloc[2])
    assert df["cardiomegaly"].tolist() == [1, pd.NA, -1]
    assert df["pleural_effusion"].tolist() == [0, 1, pd.NA]
    assert "gt_secret" not in df.columns
    assert df["path"].iloc[0] == str(images / "0.png")


def test_duplicate_ids_named(images):
    path = _write(images, {"image_id": ["a", "b", "a"], "path": ["0.png", "1.png", "2.png"]})
    with pytest.raises(ManifestError, match=r"duplicate id 'a'.*first rows \[2, 4\]"):
        ingest_manifest(path, image_root=images)


def test_missing_required_column_named(images):
    path = _write(images, {"image_id": ["a"], "file": ["0.png"]})
    with pytest.raises(ManifestError, match=r"required column\(s\) \['path'\] missing"):
        ingest_manifest(path, image_root=images)
    with pytest.raises(ManifestError, match=r"column 'nope' \(mapped to 'path'"):
        ingest_manifest(path, image_root=images, columns={"path": "nope"})


def test_missing_image_fail_or_drop_and_record(images):
    path = _write(
        images,
        {"image_id": ["a", "b", "c"], "path": ["0.png", "gone.png", "2.png"]},
        name="m.parquet",
    )
    with pytest.raises(ManifestError, match=r"row 3 \(column 'path'\).*gone.png"):
        ingest_manifest(path, image_root=images, on_missing_image="fail")
    df, dropped = ingest_manifest(path, image_root=images, on_missing_image="drop")
    assert df["image_id"].tolist() == ["a", "c"]
    assert dropped.to_dict("records") == [
        {"image_id": "b", "path": str(images / "gone.png"), "reason": "image file not found"}
    ]


def test_empty_id_and_unknown_format(images):
    path = _write(images, {"image_id": ["a", ""], "path": ["0.png", "1.png"]})
    with pytest.raises(ManifestError, match=r"row 3, column 'image_id': empty"):
        ingest_manifest(path, image_root=images)
    bad = images / "m.xlsx"
    bad.write_text("x")
    with pytest.raises(ManifestError, match="spreadsheet files are not read"):
        ingest_manifest(bad)
    other = images / "m.json"
    other.write_text("{}")
    with pytest.raises(ManifestError, match="unsupported manifest format"):
        ingest_manifest(other)


def test_explicit_label_columns(images):
    path = _write(images, {"image_id": ["a"], "path": ["0.png"], "My Label": ["1"]})
    df, _ = ingest_manifest(path, image_root=images, label_columns=["My Label"])
    assert df["my_label"].tolist() == [1]
    with pytest.raises(ManifestError, match=r"label column\(s\) \['Other'\]"):
        ingest_manifest(path, image_root=images, label_columns=["Other"])


def test_study_dates_in_every_written_form_become_years(images):
    dates = ["20180506", "20180506.0", "2017-03-04", ""]
    df = pd.DataFrame(
        {
            "image_id": list("abcd"),
            "path": ["0.png", "1.png", "2.png", "0.png"],
            "study_date": dates,
        }
    )
    m, _ = ingest_manifest(df, image_root=images)
    assert m["study_year"].tolist()[:3] == [2018, 2018, 2017] and pd.isna(m["study_year"][3])
