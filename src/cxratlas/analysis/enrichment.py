"""What each cluster (and the top outlier region) of a model is made of.

Per group: size; per finding and per common value of each subgroup column (view, vendor,
dataset, sex, age band, year, and the user's attributes: site, source, race), prevalence inside
vs outside, odds ratio (Haldane-Anscombe +0.5) and Fisher's exact p-value, Benjamini-Hochberg-
adjusted over every test of the model; the dominant dataset, view, manufacturer, sex, age band
and attribute values with their shares. Contact sheets show k seeded sample thumbnails per
group, so subgroup work starts from images, not numbers.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from cxratlas.analysis.metrics import bh_adjust
from cxratlas.analysis.naming import cluster_names
from cxratlas.subgroups import BUILT_IN, age_band, subgroup_frame


def model_groups(reduced: pd.DataFrame, outlier_quantile: float = 0.95) -> dict[str, np.ndarray]:
    """Boolean masks over `reduced` rows: each cluster (largest first), `noise`, and `outliers`,
    the rows above the outlier score's quantile (they also stay in their cluster)."""
    cluster = reduced["cluster"].to_numpy()
    sizes = pd.Series(cluster[cluster >= 0]).value_counts()
    groups = {f"c{c}": cluster == c for c in sizes.index}
    if (cluster < 0).any():
        groups["noise"] = cluster < 0
    score = reduced["outlier"].to_numpy()
    groups["outliers"] = score > np.quantile(score, outlier_quantile)
    return groups


MAX_LEVELS = 20  # values of one attribute tested, most common first
MIN_LEVEL = 5  # a value held by fewer images is not tested


def attribute_indicators(meta: pd.DataFrame, attributes: tuple[str, ...]) -> pd.DataFrame:
    """One 1/0 column `<attribute>=<value>` per common value of each categorical attribute, so
    a site, source or race is tested for enrichment like a finding (missing values stay NA)."""
    out = {}
    for col in attributes:
        if col not in meta:
            continue
        values = meta[col].astype("string")
        counts = values.value_counts()
        for level in counts.index[counts >= MIN_LEVEL][:MAX_LEVELS]:
            out[f"{col}={level}"] = (values == level).astype("Int8")
    return pd.DataFrame(out, index=meta.index)


def enrichment(
    membership: dict[str, np.ndarray], labels: pd.DataFrame, attributes: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Long table: one row per (group, finding or attribute value). `membership[group]` is a
    boolean mask over `labels` rows; labels hold 1/0/-1/NA (only 1 and 0 count); `attributes`
    are 1/0 indicators (`attribute_indicators`), reported with kind "attribute"."""
    from scipy.stats import fisher_exact

    kinds = dict.fromkeys(labels.columns, "finding")
    if attributes is not None and len(attributes.columns):
        kinds.update(dict.fromkeys(attributes.columns, "attribute"))
        labels = pd.concat([labels, attributes.set_axis(labels.index)], axis=1)
    rows = []
    for finding in kinds:
        y = labels[finding].astype("Int8")
        known = y.isin([0, 1]).to_numpy()
        pos = (y == 1).fillna(False).to_numpy()
        for group, mask in membership.items():
            a = int((mask & pos).sum())
            b = int((mask & known & ~pos).sum())
            c = int((~mask & pos).sum())
            d = int((~mask & known & ~pos).sum())
            p = fisher_exact([[a, b], [c, d]]).pvalue if (a + b) and (c + d) else np.nan
            rows.append(
                {
                    "group": group,
                    "kind": kinds[finding],
                    "finding": finding,
                    "size": int(mask.sum()),
                    "positives_in": a,
                    "prevalence_in": a / (a + b) if a + b else np.nan,
                    "prevalence_out": c / (c + d) if c + d else np.nan,
                    "odds_ratio": (a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5)),
                    "p_value": p,
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        table["p_adjusted"] = bh_adjust(table["p_value"].to_numpy(float))
    return table


def describe_groups(
    membership: dict[str, np.ndarray], meta: pd.DataFrame, attributes: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Per group: size and the dominant value (with its share) of dataset, view, manufacturer,
    sex, age band and each of the user's attributes (a site, source, race column...)."""
    meta = meta.copy()
    if "age" in meta:
        meta["age_band"] = age_band(meta["age"])
    rows = []
    for group, mask in membership.items():
        row: dict = {"group": group, "size": int(mask.sum())}
        for col in dict.fromkeys((*BUILT_IN, *attributes)):
            if col not in meta:
                continue
            counts = meta.loc[mask, col].astype("string").fillna("unknown").value_counts()
            if len(counts):
                row[f"top_{col}"] = counts.index[0]
                row[f"top_{col}_share"] = float(counts.iloc[0] / counts.sum())
        rows.append(row)
    return pd.DataFrame(rows)


def contact_sheet(groups: dict[str, list[bytes]], thumb: int = 96, title: str = "",
                  headers: dict[int, str] | None = None) -> bytes:  # fmt: skip
    """One PNG: a row per group, its name on a line above its sample thumbnails (names are
    long: "c3 · LATERAL · site B 80% · effusion ×3.1"); `headers` name columns (column index
    -> text) on a line under the title, e.g. which model's neighbours a block shows."""
    k = max((len(v) for v in groups.values()), default=1)
    pad, line = 4, 14
    head = (24 if title else 0) + (line + pad if headers else 0)
    row_h = line + thumb + pad
    width = max(k * (thumb + pad) + pad, 480)
    sheet = Image.new("L", (width, head + len(groups) * row_h), color=255)
    draw = ImageDraw.Draw(sheet)
    from cxratlas.analysis.strips import font as sheet_font

    font = sheet_font(11)
    if title:
        draw.text((4, 4), title, fill=0, font=font)
    for c, text in (headers or {}).items():
        draw.text((pad + c * (thumb + pad), head - line - pad), text, fill=0, font=font)
    for r, (group, pngs) in enumerate(groups.items()):
        y = head + r * row_h
        draw.text((pad, y), group, fill=0, font=font)
        for c, png in enumerate(pngs):
            if png is None:
                continue
            with Image.open(io.BytesIO(png)) as img:
                img = img.convert("L")
                img.thumbnail((thumb, thumb))
                sheet.paste(img, (pad + c * (thumb + pad), y + line))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def cluster_report(
    reduced_path: str,
    manifest_path: str,
    thumbnail_paths: list[str],
    sample_k: int = 8,
    seed: int = 0,
    outlier_quantile: float = 0.95,
    model: str = "",
) -> tuple[pd.DataFrame, pd.DataFrame, bytes]:
    """(enrichment table, group descriptions, contact sheet PNG) for one model."""
    from cxratlas.io import read_manifest, read_thumbnails

    reduced = pd.read_parquet(reduced_path, columns=["image_id", "cluster", "outlier"])
    manifest, columns = read_manifest(manifest_path)
    manifest = manifest.set_index("image_id").reindex(reduced["image_id"]).reset_index(drop=True)
    groups = model_groups(reduced, outlier_quantile)
    findings = [c for c in columns.findings if c in manifest.columns]
    # every subgroup column (view, vendor, dataset, sex, age band, year, the user's attributes)
    # is tested, so a cluster made of one view or one scanner shows like one made of one site
    subgroups = subgroup_frame(manifest, columns.attributes)
    indicators = attribute_indicators(subgroups, tuple(subgroups.columns))
    table = enrichment(groups, manifest[findings], indicators)
    described = describe_groups(groups, manifest, columns.attributes)
    names, labels = cluster_names(groups, manifest, table, columns.attributes)
    described.insert(1, "name", described["group"].map(names))
    described.insert(2, "label", described["group"].map(labels))  # what the atlas shows
    by_id = read_thumbnails(thumbnail_paths, reduced["image_id"])
    thumbs = [by_id.get(i) for i in reduced["image_id"]]
    rng = np.random.default_rng(seed)
    picks = {}
    for group, mask in groups.items():
        rows = np.flatnonzero(mask)
        chosen = rng.choice(rows, min(sample_k, len(rows)), replace=False) if len(rows) else []
        picks[f"{names[group]} (n={len(rows)})"] = [thumbs[i] for i in chosen]
    sheet = contact_sheet(picks, title=f"{model}: {sample_k} random images per cluster")
    return table, described, sheet
