import numpy as np
from PIL import Image

from cxratlas.demo.phantom import VENDORS, draw_phantom, make_demo_metadata, plant_outlier


def test_metadata_plants_the_documented_structure():
    df = make_demo_metadata(600, seed=1, outlier_fraction=0.05)
    assert len(df) == 600 and df["image_id"].is_unique
    assert set(df["view_position"]) == {"PA", "AP", "LATERAL"}
    assert set(df["manufacturer"]) == {v.name for v in VENDORS}
    assert df["gt_outlier"].sum() == 30
    assert set(df.loc[df.gt_outlier == 1, "gt_outlier_kind"]) == {"inverted", "rotated", "cropped"}
    per_patient = df.groupby("patient_id").size()
    assert per_patient.max() > 1 and per_patient.min() >= 1
    # a patient keeps sex across studies; devices mostly in AP (ICU) films
    assert (df.groupby("patient_id")["sex"].nunique() == 1).all()
    assert df.loc[df.view_position == "AP", "gt_support_devices"].mean() > 0.4
    assert df.loc[df.view_position == "PA", "gt_support_devices"].mean() < 0.15
    # manifest labels agree with the truth wherever they are not blank or uncertain
    stated = df["Cardiomegaly"].isin(["1.0", "0.0"])
    assert (
        df.loc[stated, "Cardiomegaly"].eq("1.0") == df.loc[stated, "gt_cardiomegaly"].eq(1)
    ).all()
    assert (df["Cardiomegaly"] == "").any() and (df["Cardiomegaly"] == "-1.0").any()


def test_metadata_is_seeded():
    a = make_demo_metadata(50, seed=5, outlier_fraction=0.1)
    b = make_demo_metadata(50, seed=5, outlier_fraction=0.1)
    c = make_demo_metadata(50, seed=6, outlier_fraction=0.1)
    assert a.equals(b) and not a.equals(c)


def _heart_width(img: np.ndarray) -> int:
    row = img[int(0.62 * img.shape[0])]  # through the heart's centre
    bright = np.flatnonzero(row > 0.6 * 255)
    mid = img.shape[1] // 2
    return int(((bright > mid - 80) & (bright < mid + 80)).sum())


def test_cardiomegaly_enlarges_the_heart_and_outliers_change_pixels():
    v = VENDORS[0]
    normal = draw_phantom("PA", v, False, False, False, np.random.default_rng(0))
    big = draw_phantom("PA", v, True, False, False, np.random.default_rng(0))
    assert _heart_width(big) > 1.2 * _heart_width(normal)
    rng = np.random.default_rng(0)
    assert np.array_equal(plant_outlier(normal, "inverted", rng), 255 - normal)
    rotated = plant_outlier(normal, "rotated", rng)
    assert rotated.shape == normal.shape and not np.array_equal(rotated, normal)
    assert plant_outlier(normal, "cropped", rng).shape == normal.shape


def test_generate_demo_writes_pngs_and_manifest(demo):
    out, df = demo
    assert (out / "manifest.csv").exists()
    img = Image.open(out / df["path"].iloc[0])
    assert img.mode == "L" and img.size == (256, 256)
