"""Phantom chest X-rays with planted, known structure: the demo data and the tests' ground truth.

Every image is drawn from its metadata, so the manifest knows what a model could find:
view (PA/AP/LATERAL), vendor (contrast, noise, burned-in marker), cardiomegaly (heart size),
pleural effusion (fluid at a lung base), support devices (tube and pacemaker), and planted outliers
(MONOCHROME1-style inversion, rotation, a zoomed crop) flagged in `gt_outlier`, which no model
sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter
from tqdm import tqdm

VIEWS = ("PA", "AP", "LATERAL")
VIEW_P = (0.5, 0.3, 0.2)
OUTLIER_KINDS = ("inverted", "rotated", "cropped")
# CheXpert column names, so the demo manifest exercises label normalisation by name.
LABELS = {
    "cardiomegaly": "Cardiomegaly",
    "effusion": "Pleural Effusion",
    "support_devices": "Support Devices",
    "pneumonia": "Pneumonia",  # the planted shortcut: labelled, never drawn (see below)
}
# Pneumonia is never drawn; its label follows the vendor (60% on this one, 5% on the others),
# as a finding that co-occurs with a site does. The audit must flag it and not the drawn ones.
SHORTCUT_VENDOR = "Carestream"
SHORTCUT_RATES = (0.6, 0.05)


@dataclass(frozen=True)
class Vendor:
    name: str
    gamma: float
    noise: float
    offset: float
    blur: float
    marker_corner: str
    collimation: float = 0.0
    annotation_strip: bool = False


VENDORS = (
    Vendor("Carestream", 0.75, 0.015, 0.0, 1.2, "tl"),
    Vendor("Fujifilm", 1.45, 0.07, 0.06, 0.6, "tr", annotation_strip=True),
    Vendor("Siemens", 1.05, 0.035, -0.05, 2.0, "bl", collimation=0.08),
)


def _ellipse(u, v, cx, cy, rx, ry):
    return ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 <= 1.0


def _soft(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32)


def draw_phantom(
    view: str,
    vendor: Vendor,
    cardiomegaly: bool,
    effusion: bool,
    devices: bool,
    rng: np.random.Generator,
    size: int = 256,
) -> np.ndarray:
    """Draw one phantom radiograph; returns uint8 (size, size)."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # Patient positioning varies a little: shift and scale.
    dx, dy = rng.normal(0, 0.015, 2)
    s = 1 + rng.normal(0, 0.03)
    u = (u - 0.5 - dx) / s + 0.5
    v = (v - 0.5 - dy) / s + 0.5
    heart_scale = (1.38 if cardiomegaly else 1.0) * (1 + rng.normal(0, 0.04))
    if view in ("PA", "AP"):
        img = _frontal(u, v, view == "AP", effusion, heart_scale, rng)
    else:
        img = _lateral(u, v, effusion, heart_scale)
    if devices:
        img = _devices(u, v, img)
    return _render(img, vendor, view == "AP", rng)


def _frontal(u, v, ap: bool, effusion: bool, heart_scale: float, rng) -> np.ndarray:
    img = 0.55 * _soft(_ellipse(u, v, 0.5, 0.56, 0.43, 0.52))
    lung_ry = 0.25 if ap else 0.29
    for side in (-1, 1):
        lung = _ellipse(u, v, 0.5 + side * 0.18, 0.47, 0.13, lung_ry)
        img = np.where(lung, 0.16, img)
        if effusion and (side == 1 or rng.random() < 0.5):
            level = 0.47 + lung_ry * 0.45 - 0.08 * np.abs(u - (0.5 + side * 0.18))
            img = np.where(lung & (v > level), 0.5, img)
    rx = 0.11 * heart_scale * (1.12 if ap else 1.0)
    img = np.where(_ellipse(u, v, 0.54, 0.62, rx, 0.12 * heart_scale**0.5), 0.72, img)
    img += 0.2 * _soft(np.abs(u - 0.5) < 0.03)  # spine
    for i in range(9):  # ribs
        y0 = 0.2 + i * 0.055
        curve = y0 + 0.06 * ((u - 0.5) / 0.2) ** 2
        img += 0.07 * _soft((np.abs(v - curve) < 0.01) & (np.abs(u - 0.5) < 0.32))
    clav_y = 0.15 if ap else 0.19
    img += 0.18 * _soft(
        (np.abs(v - clav_y - 0.1 * np.abs(u - 0.5)) < 0.012) & (np.abs(u - 0.5) < 0.28)
    )
    if ap:  # scapulae overlap the lung fields in AP films
        for side in (-1, 1):
            img += 0.08 * _soft(_ellipse(u, v, 0.5 + side * 0.33, 0.33, 0.07, 0.12))
    return img


def _lateral(u, v, effusion: bool, heart_scale: float) -> np.ndarray:
    img = 0.55 * _soft(_ellipse(u, v, 0.5, 0.56, 0.34, 0.52))
    lung = _ellipse(u, v, 0.52, 0.46, 0.22, 0.29)
    img = np.where(lung, 0.2, img)
    if effusion:
        img = np.where(lung & (v > 0.62 + 0.05 * (u - 0.52)), 0.5, img)
    img = np.where(_ellipse(u, v, 0.4, 0.6, 0.12 * heart_scale, 0.13), 0.66, img)
    for i in range(8):  # vertebral bodies
        img += 0.25 * _soft(_ellipse(u, v, 0.8, 0.2 + i * 0.085, 0.04, 0.03))
    img += 0.12 * _soft((u < 0.45) & (v < 0.18))  # arms raised
    return img


def _devices(u, v, img: np.ndarray) -> np.ndarray:
    """A tube, a pacemaker box and its lead."""
    tube = (np.abs(u - (0.5 + 0.04 * v)) < 0.006) & (v < 0.38)
    img = np.where(tube, 0.97, img)
    img = np.where((np.abs(u - 0.76) < 0.035) & (np.abs(v - 0.22) < 0.022), 1.0, img)
    lead = (np.abs(v - (0.22 + (0.76 - u) * 1.1)) < 0.005) & (u > 0.52) & (u < 0.76)
    return np.where(lead, 0.9, img)


def _render(img: np.ndarray, vendor: Vendor, ap: bool, rng) -> np.ndarray:
    """Vendor rendering: blur, tone curve, offset, noise, burned-in marker."""
    size = img.shape[0]
    pil = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
    img = (
        np.asarray(pil.filter(ImageFilter.GaussianBlur(vendor.blur * size / 256)), np.float32) / 255
    )
    img = np.clip(img, 0, 1) ** vendor.gamma + vendor.offset
    img += rng.normal(0, vendor.noise, img.shape).astype(np.float32)
    m = size // 16
    corner = {
        "tl": (slice(m, 2 * m), slice(m, 2 * m)),
        "tr": (slice(m, 2 * m), slice(-2 * m, -m)),
        "bl": (slice(-2 * m, -m), slice(m, 2 * m)),
    }[vendor.marker_corner]
    img[corner] = 1.0
    if vendor.collimation:  # a tight collimator leaves dark bands at the edges
        c = int(vendor.collimation * size)
        img[:, :c] = img[:, -c:] = 0.02
    if vendor.annotation_strip:  # burned-in acquisition text along the bottom edge
        img[-m:, m : size - m] = np.where(np.arange(m, size - m) % 6 < 3, 0.95, 0.1)
    if ap:  # portable films carry a "PORTABLE" marker at the top
        img[m // 2 : m, size // 2 - 2 * m : size // 2 + 2 * m] = 0.9
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def plant_outlier(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "inverted":  # MONOCHROME1 shown without inversion
        return 255 - img
    if kind == "rotated":
        return np.rot90(img, k=int(rng.choice([1, 3]))).copy()
    if kind == "cropped":
        n = img.shape[0]
        w = int(n * rng.uniform(0.35, 0.5))
        y, x = rng.integers(0, n - w, 2)
        crop = Image.fromarray(img[y : y + w, x : x + w]).resize((n, n), Image.Resampling.BILINEAR)
        return np.asarray(crop)
    raise ValueError(f"unknown outlier kind {kind!r}")


def _label_value(truth: bool, rng: np.random.Generator) -> str:
    """CheXpert-style manifest value: mostly the truth, sometimes uncertain or not mentioned."""
    r = rng.random()
    if r < 0.08:
        return ""
    if truth and r < 0.14:
        return "-1.0"
    return "1.0" if truth else "0.0"


def make_demo_metadata(n_images: int, seed: int, outlier_fraction: float) -> pd.DataFrame:
    """The manifest rows with their planted truth; no pixels yet."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    patient = 0
    while len(rows) < n_images:
        patient += 1
        sex = str(rng.choice(["F", "M"]))
        age0 = int(rng.integers(20, 86))
        chronic_cardio = rng.random() < 0.25
        year0 = int(rng.integers(2012, 2022))
        for study in range(int(rng.integers(1, 4))):
            vendor = VENDORS[int(rng.integers(len(VENDORS)))]
            year = min(year0 + study, 2023)
            icu = rng.random() < 0.3
            effusion = rng.random() < (0.35 if icu else 0.12)
            devices = rng.random() < (0.7 if icu else 0.05)
            views = ["AP"] if icu else (["PA", "LATERAL"] if rng.random() < 0.55 else ["PA"])
            for view in views:
                rows.append(
                    {
                        "patient_id": f"P{patient:05d}",
                        "study_id": f"P{patient:05d}-S{study + 1}",
                        "view_position": view,
                        "manufacturer": vendor.name,
                        "sex": sex,
                        "age": age0 + (year - year0),
                        "study_date": f"{year}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}",
                        "gt_cardiomegaly": int(chronic_cardio),
                        "gt_effusion": int(effusion),
                        "gt_support_devices": int(devices),
                    }
                )
    df = pd.DataFrame(rows[:n_images])
    df.insert(0, "image_id", [f"phantom-{i:06d}" for i in range(len(df))])
    df.insert(1, "path", [f"images/{i}.png" for i in df["image_id"]])
    n_out = int(round(outlier_fraction * len(df)))
    out_idx = rng.choice(len(df), size=n_out, replace=False)
    df["gt_outlier"] = 0
    df["gt_outlier_kind"] = ""
    df.loc[out_idx, "gt_outlier"] = 1
    df.loc[out_idx, "gt_outlier_kind"] = [OUTLIER_KINDS[i % 3] for i in range(n_out)]
    rate = np.where(df["manufacturer"] == SHORTCUT_VENDOR, *SHORTCUT_RATES)
    # its own stream: the images and the other labels stay as they were before it was planted
    df["gt_pneumonia"] = (np.random.default_rng([seed, 1]).random(len(df)) < rate).astype(int)
    for key, column in LABELS.items():
        df[column] = [_label_value(bool(t), rng) for t in df[f"gt_{key}"]]
    no_finding = df[[f"gt_{k}" for k in LABELS]].sum(axis=1) == 0
    df["No Finding"] = np.where(no_finding, "1.0", "")
    return df


def generate_demo(
    out_dir: str | os.PathLike,
    n_images: int = 400,
    seed: int = 7,
    image_size: int = 256,
    outlier_fraction: float = 0.05,
    progress: bool = True,
) -> pd.DataFrame:
    """Write `n_images` phantom PNGs under `out_dir/images/` and `out_dir/manifest.csv`."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    df = make_demo_metadata(n_images, seed, outlier_fraction)
    vendors = {v.name: v for v in VENDORS}
    for i, row in enumerate(
        tqdm(df.itertuples(index=False), total=len(df), disable=not progress, desc="phantoms")
    ):
        rng = np.random.default_rng([seed, i])
        img = draw_phantom(
            row.view_position,
            vendors[row.manufacturer],
            bool(row.gt_cardiomegaly),
            bool(row.gt_effusion),
            bool(row.gt_support_devices),
            rng,
            image_size,
        )
        if row.gt_outlier:
            img = plant_outlier(img, row.gt_outlier_kind, rng)
        Image.fromarray(img, mode="L").save(out / row.path)
    df.to_csv(out / "manifest.csv", index=False)
    return df
