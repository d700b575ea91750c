"""Dataset presets read the public layouts by name: MIMIC-CXR-JPG, CheXpert, NIH ChestX-ray14 and
an Emory-style set of joined tables. Headers are the verbatim ones of the releases; where
torchxrayvision's wheel is installed, its copies of the real NIH and CheXpert manifests are read
in full and checked against their published counts."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cxratlas.ingest.datasets import ingest_dataset
from cxratlas.ingest.manifest import ManifestError, normalise_label, snake_case
from cxratlas.ingest.presets import read_preset


def _real_manifest(name: str) -> Path:
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None:
        pytest.skip("torchxrayvision (its real manifests) not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / name


def _jpg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (16, 16), 90).save(path)


MIMIC_META = (
    "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,"
    "StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning"
)
MIMIC_LABELS = ("subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged "
                "Cardiomediastinum,Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,"
                "Pleural Other,Pneumonia,Pneumothorax,Support Devices")  # fmt: skip
D1, D2, D3 = (f"{c * 8}-{c * 8}-{c * 8}-{c * 8}-{c * 8}" for c in "abc")


@pytest.fixture
def mimic(tmp_path):
    root = tmp_path / "mimic-cxr-jpg"
    rows = [
        (D1, "10000032", "50414267", "PA", "21800506"),
        (D2, "10000032", "50414267", "LATERAL", "21800506"),
        (D3, "10000764", "57375967", "AP", "21321015"),
    ]
    meta = [MIMIC_META] + [
        f"{d},{s},{st},CHEST (PA AND LAT),{v},3056,2544,{date},213014.531,CHEST (PA AND LAT),"
        "postero-anterior,Erect"
        for d, s, st, v, date in rows
    ]
    (tmp_path / "mimic-cxr-2.0.0-metadata.csv").write_text("\n".join(meta) + "\n")
    (tmp_path / "mimic-cxr-2.0.0-chexpert.csv").write_text(
        MIMIC_LABELS + "\n10000032,50414267,,,,,,,,,1.0,,,,,\n"
        "10000764,57375967,,,-1.0,,,,,,,,,1.0,0.0,\n"
    )
    (tmp_path / "mimic-cxr-2.0.0-split.csv").write_text(
        f"dicom_id,study_id,subject_id,split\n{D1},50414267,10000032,train\n"
        f"{D2},50414267,10000032,train\n{D3},57375967,10000764,test\n"
    )
    for d, s, st, *_ in rows:
        _jpg(root / f"files/p{s[:2]}/p{s}/s{st}/{d}.jpg")
    return {
        "name": "mimic", "preset": "mimic-cxr-jpg", "image_root": str(root),
        "manifest": str(tmp_path / "mimic-cxr-2.0.0-metadata.csv"),
        "labels": str(tmp_path / "mimic-cxr-2.0.0-chexpert.csv"),
        "split": str(tmp_path / "mimic-cxr-2.0.0-split.csv"),
    }  # fmt: skip


def test_mimic_cxr_jpg_layout_labels_per_study_and_split(mimic):
    m, dropped = ingest_dataset(mimic)
    assert dropped.empty and m["image_id"].tolist() == [D1, D2, D3]
    assert m["path"][0].endswith(f"files/p10/p10000032/s50414267/{D1}.jpg")
    assert m["view_position"].tolist() == ["PA", "LATERAL", "AP"]
    assert m["study_year"].tolist() == [2180, 2180, 2132]  # shifted dates, year only
    assert m["no_finding"].tolist()[:2] == [1, 1]  # one label row per study, both images get it
    assert m["consolidation"][2] == -1 and m["pneumonia"][2] == 1 and m["pneumothorax"][2] == 0
    assert m["pleural_effusion"].isna().all()
    assert m["split"].tolist() == ["train", "train", "test"] and set(m["dataset"]) == {"mimic"}


ORIENTATION = "PatientOrientationCodeSequence_CodeMeaning"


def test_mimic_carries_a_metadata_column_and_still_checks_a_joined_one(mimic):
    """`keep_columns` may name a column of the metadata file (carried row for row before the
    label and split joins) or of a joined file (the split): both reach the manifest."""
    m, _ = ingest_dataset({**mimic, "keep_columns": [ORIENTATION, "split"]})
    assert m[snake_case(ORIENTATION)].tolist() == ["Erect"] * 3
    assert m["split"].tolist() == ["train", "train", "test"]
    with pytest.raises(ManifestError, match=r"\['Orientation'\] \(dataset\.keep_columns\)"):
        ingest_dataset({**mimic, "keep_columns": ["Orientation"]})
    with pytest.raises(ManifestError, match=r"\['my_labl'\] \(dataset\.label_columns\) are in "):
        ingest_dataset({**mimic, "label_columns": ["my_labl"]})


def test_mimic_label_file_with_a_study_twice_is_named(mimic, tmp_path):
    lab = Path(mimic["labels"])
    lab.write_text(lab.read_text() + "10000764,57375967,,,,,,,,,1.0,,,,,\n")
    with pytest.raises(ManifestError, match=r"chexpert.csv: row 4: study 57375967 appears twice"):
        ingest_dataset(mimic)


def test_chexpert_ids_from_path_and_views(tmp_path):
    real = _real_manifest("chexpert_train.csv.gz")
    head = pd.read_csv(real, dtype=str, keep_default_na=False, nrows=30)
    head.to_csv(tmp_path / "train.csv", index=False)
    for p in head["Path"]:
        _jpg(tmp_path / p)
    spec = {"name": "chexpert", "preset": "chexpert", "manifest": str(tmp_path / "train.csv"),
            "image_root": str(tmp_path)}  # fmt: skip
    m, dropped = ingest_dataset(spec)
    assert len(m) == 30 and dropped.empty
    assert m["image_id"][0] == "train_patient00001_study1_view1_frontal"
    assert m["patient_id"][0] == "patient00001" and m["study_id"][0] == "patient00001_study1"
    lateral = head["Frontal/Lateral"] == "Lateral"
    assert (m.loc[lateral.to_numpy(), "view_position"] == "LATERAL").all() and lateral.any()
    assert m["cardiomegaly"][1] == -1 and m["support_devices"][0] == 1


def test_chexpert_real_train_csv_in_full():
    table, _, labels, source = read_preset(
        {
            "name": "c",
            "preset": "chexpert",
            "manifest": str(_real_manifest("chexpert_train.csv.gz")),
        }
    )
    assert len(table) == 223_414 and table["image_id"].is_unique
    views = table["view_position"].value_counts().to_dict()
    assert views["AP"] == 161_590 and views["PA"] == 29_420 and views["LATERAL"] == 32_387
    assert len(labels) == 14
    assert (normalise_label(table["Pleural Effusion"], "Pleural Effusion", source) == -1).sum() > 0


def test_nih_real_data_entry_in_full():
    table, _, labels, _ = read_preset(
        {"name": "nih", "preset": "nih-cxr14",
         "manifest": str(_real_manifest("Data_Entry_2017_v2020.csv.gz"))}
    )  # fmt: skip
    assert len(table) == 112_120 and table["patient_id"].nunique() == 30_805
    positives = {f: int((table[f] == "1").sum()) for f in labels}
    assert positives["Pneumonia"] == 1_431 and positives["Hernia"] == 227
    assert positives["No Finding"] == 60_361 and positives["Infiltration"] == 19_894
    assert table["view_position"].value_counts()["PA"] == 67_310


def test_nih_2017_trailing_commas_and_split_image_folders(tmp_path):
    header = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
        "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
    )
    rows = ["00000001_000.png,Cardiomegaly,0,1,058Y,M,PA,2682,2749,0.143,0.143,",
            "00000003_001.png,Hernia|Effusion,1,3,074Y,F,AP,2500,2048,0.168,0.168,",
            "00000004_000.png,No Finding,0,4,082Y,M,PA,2500,2048,0.168,0.168,"]  # fmt: skip
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join([header, *rows]) + "\n")
    _jpg(tmp_path / "images_001/images/00000001_000.png")
    _jpg(tmp_path / "images_002/images/00000003_001.png")
    _jpg(tmp_path / "images_002/images/00000004_000.png")
    m, dropped = ingest_dataset({"name": "nih", "preset": "nih-cxr14", "image_root": str(tmp_path),
                                 "manifest": str(tmp_path / "Data_Entry_2017.csv")})  # fmt: skip
    assert dropped.empty and m["image_id"].tolist() == [
        "00000001_000",
        "00000003_001",
        "00000004_000",
    ]
    assert m["path"][1].endswith("images_002/images/00000003_001.png")
    assert m["view_position"].tolist() == ["PA", "AP", "PA"] and m["sex"].tolist() == [
        "M",
        "F",
        "M",
    ]
    assert m["hernia"].tolist() == [0, 1, 0] and m["effusion"].tolist() == [0, 1, 0]
    assert m["no_finding"].tolist() == [0, 0, 1] and m["study_id"][1] == "3_1"


def test_nih_unknown_or_blank_findings_are_named_with_their_lines(tmp_path):
    rows = ["1.png,Cardiomegaly|Pnuemonia", "2.png,No Finding", "3.png,", "4.png,COVID-19|Effusion"]
    (tmp_path / "d.csv").write_text("\n".join(["Image Index,Finding Labels", *rows]) + "\n")
    with pytest.raises(
        ManifestError,
        match=(
            r"d\.csv: column 'Finding Labels' holds \['\(blank\)', 'COVID-19', 'Pnuemonia'\] in 3 "
            r"row\(s\) \(line\(s\) 2, 4, 5\).*'No Finding' for an image with none of them\. "
            r"Labels of your own go in columns of their own, named in the dataset's label_columns"
        ),
    ):
        read_preset({"name": "n", "preset": "nih-cxr14", "manifest": str(tmp_path / "d.csv")})


@pytest.mark.parametrize("preset", ["nih-cxr14", "chexpert"])
def test_a_preset_carries_a_site_column_and_labels_of_your_own(tmp_path, preset):
    """A release's layout plus the user's own columns: `keep_columns` (a site) and
    `label_columns` (a COVID label, 1 / 0 / blank) are carried beside the release's findings;
    a name the file lacks stops with the file's own columns listed."""
    if preset == "nih-cxr14":
        head, rows = "Image Index,Finding Labels,View Position", [
            "a.png,Pneumonia,PA", "b.png,No Finding,AP", "c.png,Effusion,PA"]  # fmt: skip
    else:
        head, rows = "Path,Sex,Age,Frontal/Lateral,AP/PA,Pneumonia,Pleural Effusion", [
            f"train/patient0000{i}/study1/view1_frontal.jpg,Male,60,Frontal,PA,{i % 2},"
            for i in range(1, 4)]  # fmt: skip
    rows = [f"{r},{site},{covid}" for r, site, covid in zip(rows, "ABA", "10 ", strict=True)]
    for r in rows:
        _jpg(tmp_path / r.split(",")[0])
    (tmp_path / "d.csv").write_text("\n".join([f"{head},Site,covid_pos", *rows]) + "\n")
    spec = {
        "name": "n",
        "preset": preset,
        "manifest": str(tmp_path / "d.csv"),
        "keep_columns": ["Site"],
        "label_columns": ["covid_pos"],
        "image_root": str(tmp_path),
    }
    m, _ = ingest_dataset(spec)
    assert m["site"].tolist() == ["A", "B", "A"]
    assert m["covid_pos"].tolist()[:2] == [1, 0] and pd.isna(m["covid_pos"].iloc[2])
    assert "pneumonia" in m.columns
    with pytest.raises(
        ManifestError,
        match=r"\['Sites'\] \(dataset\.keep_columns\) not found; the "
        r"file's columns are \[.*'Site', 'covid_pos'\]",
    ):
        read_preset({**spec, "keep_columns": ["Sites"]})


@pytest.fixture
def emory(tmp_path):
    for i in range(4):
        _jpg(tmp_path / "png" / f"img{i}.png")
    pd.DataFrame({"ImageID": [f"1.2.840.{i}" for i in range(4)],
                  "png_path": [f"png/img{i}.png" for i in range(4)],
                  "empi_anon": ["p1", "p1", "p2", "p3"],
                  "ViewPosition": ["PA", "LL", "AP", "PA"]}).to_csv(
        tmp_path / "meta.csv", index=False)  # fmt: skip
    pd.DataFrame({"ImageID": [f"1.2.840.{i}" for i in range(4)],
                  "Pneumonia": [1, 0, "", 1], "Cardiomegaly": [0, 0, 1, ""]}).to_csv(
        tmp_path / "findings.csv", index=False)  # fmt: skip
    demo = pd.DataFrame({"empi_anon": ["p1", "p2", "p3"], "GENDER": ["F", "M", "F"],
                         "AGE": [61, 45, 80], "RACE": ["A", "B", "C"]})  # fmt: skip
    wide = pd.DataFrame({f"sdoh_{i}": range(3) for i in range(300)})  # social determinants
    demo = pd.concat([demo, wide], axis=1)
    demo.to_parquet(tmp_path / "demographics.parquet")
    return {
        "name": "emory", "preset": "emory", "manifest": str(tmp_path / "meta.csv"),
        "image_root": str(tmp_path),
        "columns": {"image_id": "ImageID", "path": "png_path", "patient_id": "empi_anon",
                    "view_position": "ViewPosition"},
        "tables": [
            {"path": str(tmp_path / "findings.csv"), "key": "image_id", "key_column": "ImageID",
             "labels": True, "columns": ["Pneumonia", "Cardiomegaly"]},
            {"path": str(tmp_path / "demographics.parquet"), "key": "patient_id",
             "key_column": "empi_anon", "columns": {"sex": "GENDER", "age": "AGE",
                                                    "race": "RACE", "sdoh_7": "sdoh_7"}},
        ],
        "keep_columns": ["race", "sdoh_7"],
    }  # fmt: skip


def test_emory_tables_join_by_image_and_patient(emory):
    m, dropped = ingest_dataset(emory)
    assert dropped.empty and m["image_id"].tolist() == [f"1.2.840.{i}" for i in range(4)]
    assert m["pneumonia"].tolist()[:2] == [1, 0] and pd.isna(m["pneumonia"][2])
    assert m["sex"].tolist() == ["F", "F", "M", "F"] and m["age"].tolist() == [61, 61, 45, 80]
    assert m["race"].tolist() == ["A", "A", "B", "C"]
    assert m["sdoh_7"].tolist() == ["0", "0", "1", "2"]
    assert m["view_position"].tolist() == ["PA", "LATERAL", "AP", "PA"]
    assert "sdoh_8" not in m  # only the mapped columns travel


def test_emory_errors_name_table_and_key(emory, tmp_path):
    demo = pd.read_parquet(tmp_path / "demographics.parquet")
    pd.concat([demo, demo.iloc[[1]]]).to_parquet(tmp_path / "demographics.parquet")
    with pytest.raises(
        ManifestError, match=r"demographics.parquet: row 5: patient_id 'p2' appears"
    ):
        ingest_dataset(emory)
    emory["tables"][1]["key_column"] = "EMPI"
    with pytest.raises(
        ManifestError, match=r"join column 'EMPI' \(dataset.tables\[1\].key_column\)"
    ):
        ingest_dataset(emory)
    emory["tables"][1]["key_column"] = "empi_anon"
    emory["tables"][1]["columns"] = {"view_position": "RACE"}
    with pytest.raises(ManifestError, match=r"\['view_position'\] .* already in the manifest"):
        ingest_dataset(emory)


@pytest.mark.parametrize("name", ["mimic-cxr-jpg", "emory", "chexpert"])
def test_example_configs_are_valid(repo, name):
    import yaml

    from cxratlas.config import validate_config

    cfg = yaml.safe_load((repo / "config/config.yaml").read_text())
    for key, value in yaml.safe_load((repo / f"config/examples/{name}.yaml").read_text()).items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and key in cfg else value
    validate_config(cfg)
    assert cfg["dataset"]["preset"] in ("mimic-cxr-jpg", "emory", "chexpert")
