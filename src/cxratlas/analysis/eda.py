"""Exploratory analysis of the whole manifest (the study's first step), vectorised.

Counts of view position over unique images, images per year, finding labels as CheXpert codes
(positive / negative / uncertain / missing), images per study and per patient, manufacturer, sex
and age. One long table (section, key, count) plus a figure; a 2.4M-row manifest takes about
a second (benchmarks/eda.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxratlas.figures import save_figure

LABEL_NAMES = {1: "positive", 0: "negative", -1: "uncertain"}
AGE_BINS = list(range(0, 101, 10)) + [200]


def _counts(section: str, values: pd.Series) -> pd.DataFrame:
    vc = values.astype("string").fillna("missing").value_counts(sort=False).sort_index()
    return pd.DataFrame({"section": section, "key": vc.index.astype(str), "count": vc.to_numpy()})


TOP_LEVELS = 30  # an attribute with more values shows its most common ones and "other"


def eda_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Long table of counts; `manifest` is the ingested one (unique image ids), its findings and
    attributes recorded on `attrs` (io.read_manifest)."""
    from cxratlas.io import ManifestColumns

    columns = ManifestColumns.of(manifest)
    m = manifest.drop_duplicates("image_id") if "image_id" in manifest else manifest
    parts = [pd.DataFrame({"section": ["images"], "key": ["total"], "count": [len(m)]})]
    for col in ("view_position", "manufacturer", "sex", "study_year"):
        if col in m:
            parts.append(_counts(col, m[col]))
    if "age" in m:
        age = pd.to_numeric(m["age"], errors="coerce")
        band = pd.cut(
            age, AGE_BINS, right=False, labels=[f"{a}-{a + 9}" for a in AGE_BINS[:-2]] + ["100+"]
        )
        parts.append(_counts("age", band))
    for col, section in (("study_id", "images_per_study"), ("patient_id", "images_per_patient")):
        if col in m:
            per = m.groupby(col, observed=True, sort=False).size()
            hist = per.clip(upper=10).value_counts().sort_index()
            keys = [f"{k}" if k < 10 else "10+" for k in hist.index]
            parts.append(pd.DataFrame({"section": section, "key": keys, "count": hist.to_numpy()}))
    for col in columns.attributes:
        if col in m:
            values = m[col].astype("string")
            top = values.value_counts().index[:TOP_LEVELS]
            parts.append(_counts(col, values.where(values.isin(top) | values.isna(), "other")))
    for col in sorted(c for c in columns.findings if c in m.columns):
        codes = m[col].astype("Int8").map(LABEL_NAMES).astype("string")
        parts.append(_counts(f"label:{col}", codes))
    table = pd.concat(parts, ignore_index=True)
    table["count"] = table["count"].astype(np.int64)
    return table


def eda_figure(table: pd.DataFrame, out_path: str) -> None:
    """Bar charts, one per section; finding labels as stacked bars (pos/neg/uncertain/missing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = [
        s for s in dict.fromkeys(table["section"]) if s != "images" and not s.startswith("label:")
    ]
    labels = table[table["section"].str.startswith("label:")]
    panels = len(plain) + (1 if len(labels) else 0)
    cols = min(3, max(panels, 1))  # two panels: two columns, not a third left blank
    rows = max(1, -(-panels // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, section in zip(axes.flat, plain, strict=False):
        sub = table[table["section"] == section]
        ax.bar(sub["key"], sub["count"], color="#4c72b0")
        ax.set_title(section)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    if len(labels):
        ax = axes.flat[len(plain)]
        wide = labels.pivot_table(index="section", columns="key", values="count", fill_value=0)
        wide.index = [s.removeprefix("label:") for s in wide.index]
        bottom = np.zeros(len(wide))
        for key in [k for k in ("positive", "negative", "uncertain", "missing") if k in wide]:
            ax.barh(wide.index, wide[key], left=bottom, label=key)
            bottom += wide[key].to_numpy()
        # the key above the bars, as the panel's title: inside the axes it covered them
        ax.legend(title="finding labels", loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncol=4, fontsize=7, title_fontsize="large", frameon=False,
                  borderaxespad=0.2, handlelength=1)  # fmt: skip
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    total = int(table.loc[table["section"] == "images", "count"].sum())
    fig.suptitle(f"Manifest: {total:,} images")
    fig.tight_layout()
    save_figure(fig, out_path, dpi=110)
    plt.close(fig)
