"""No patient identifier leaves the source tables: ids hashed at ingest, identifier columns
refused, dates cut to the year, and a scan of every output (atlas, tables, figures, logs,
report) for the identifier values of an Emory-style source."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from cxratlas.ingest.datasets import ingest_datasets
from cxratlas.ingest.privacy import find_identifiers, hash_id

pytestmark = pytest.mark.workflow


def _emory_from_phantoms(tmp_path):
    """Phantoms behind an Emory-style export: identifiers in the base table, demographics by MRN."""
    from cxratlas.demo.phantom import generate_demo

    demo = generate_demo(
        tmp_path / "src", n_images=150, seed=21, outlier_fraction=0, progress=False
    )
    rng = np.random.default_rng(0)
    patients = demo["patient_id"].unique()
    mrn = dict(
        zip(patients, [f"MRN{n:08d}" for n in rng.choice(10**8, len(patients))], strict=True)
    )
    base = pd.DataFrame({
        "ImageID": [f"1.3.6.1.4.1.5962.{i}" for i in range(len(demo))],
        "png_path": demo["path"],
        "MRN": demo["patient_id"].map(mrn),
        "AccessionNumber": [f"ACC{n:09d}" for n in rng.choice(10**9, len(demo))],
        "PatientName": [f"Patient^Name{p[1:]}" for p in demo["patient_id"]],
        "BirthDate": [f"19{40 + i % 50}-0{1 + i % 9}-1{i % 9}" for i in range(len(demo))],
        "StudyDate": [f"2019-0{1 + i % 9}-2{i % 9}" for i in range(len(demo))],
        "ViewPosition": demo["view_position"],
    })  # fmt: skip
    base.to_csv(tmp_path / "metadata.csv", index=False)
    findings = demo[["Cardiomegaly", "Pleural Effusion", "Support Devices"]].assign(
        ImageID=base["ImageID"]
    )
    findings.to_csv(tmp_path / "findings.csv", index=False)
    people = demo.drop_duplicates("patient_id")
    people = pd.DataFrame(
        {"MRN": people["patient_id"].map(mrn), "GENDER": people["sex"], "AGE": people["age"]}
    )
    people.to_csv(tmp_path / "demographics.csv", index=False)
    return base, {
        "name": "emory", "preset": "emory", "manifest": str(tmp_path / "metadata.csv"),
        "image_root": str(tmp_path / "src"),
        "columns": {"image_id": "ImageID", "path": "png_path", "patient_id": "MRN",
                    "study_id": "AccessionNumber", "study_date": "StudyDate",
                    "view_position": "ViewPosition"},
        "tables": [
            {"path": str(tmp_path / "findings.csv"), "key": "image_id", "key_column": "ImageID",
             "labels": True},
            {"path": str(tmp_path / "demographics.csv"), "key": "patient_id", "key_column": "MRN",
             "columns": {"sex": "GENDER", "age": "AGE"}},
        ],
    }  # fmt: skip


IDENTIFIERS = ["MRN", "AccessionNumber", "PatientName", "BirthDate", "StudyDate"]


def test_ingest_hashes_ids_and_refuses_identifier_columns(tmp_path):
    base, spec = _emory_from_phantoms(tmp_path)
    privacy = {"hash_ids": True, "salt": "pepper", "identifiers": ["PatientName", "BirthDate"]}
    manifest, _ = ingest_datasets([spec], privacy)
    assert manifest["patient_id"].iloc[0] == hash_id(base["MRN"].iloc[0], "pepper")
    assert manifest["study_id"].iloc[0] == hash_id(base["AccessionNumber"].iloc[0], "pepper")
    assert manifest["patient_id"].nunique() == base["MRN"].nunique()  # grouping survives
    assert manifest["study_year"].iloc[0] == 2019 and "study_date" not in manifest
    assert manifest["pleural_effusion"].notna().any() and manifest["sex"].notna().all()
    with pytest.raises(ValueError, match=r"keep_columns names \['PatientName'\].*identifiers"):
        ingest_datasets([{**spec, "keep_columns": ["PatientName"]}], privacy)
    # an identifier may be the patient id only while ids are hashed
    unhashed = {**privacy, "hash_ids": False, "identifiers": ["MRN"]}
    with pytest.raises(ValueError, match=r"columns names \['MRN'\]"):
        ingest_datasets([spec], unhashed)
    ingest_datasets([spec], {**unhashed, "hash_ids": True})


def test_no_identifier_reaches_any_output(repo, tmp_path):
    base, spec = _emory_from_phantoms(tmp_path)
    cfg = {
        "dataset": spec,
        "sample": {"n": 150},
        "extract": {"shard_size": 75},
        "privacy": {"salt": "a-project-salt", "identifiers": ["PatientName", "BirthDate"]},
        "analysis": {"label_noise": {"finding": "cardiomegaly"}},
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(cfg))
    run = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(tmp_path),
           "--cores", "2", "--configfile", str(tmp_path / "test.yaml")]  # fmt: skip
    for extra in ([], ["--report", str(tmp_path / "report.html")]):
        proc = subprocess.run(run + extra, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
    atlas = pd.read_parquet(tmp_path / "results/atlas/atlas.parquet")
    assert len(atlas) == 150 and atlas["patient_id_hash"].str.fullmatch(r"[0-9a-f]{16}").all()
    outputs = [str(tmp_path / d) for d in ("results", "logs", "report.html", ".snakemake/log")]
    hits = find_identifiers(outputs, base[IDENTIFIERS].astype(str).stack())
    assert hits == []
    # the scan can fail: the sources hold every value, and the CLI says so
    cli = [sys.executable, "-m", "cxratlas.cli", "check-privacy"]
    opts = ["--table", str(tmp_path / "metadata.csv"), "--columns", *IDENTIFIERS]
    found = subprocess.run([*cli, str(tmp_path / "metadata.csv"), *opts], capture_output=True,
                           text=True)  # fmt: skip
    assert found.returncode == 1 and "Patient^Name" in found.stdout
    clean = subprocess.run([*cli, *outputs, *opts], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout[-2000:]
    assert f"checked {len(set(base[IDENTIFIERS].astype(str).stack()))} identifier" in clean.stderr
