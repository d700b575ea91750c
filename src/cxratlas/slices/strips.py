"""The strip sheet of each classifier: a row per significant slice (largest AUROC drop first),
its most typical errors, each captioned with its call (FN, FP, TP, TN) and label, the score, and
the attribute the slice's description leads with."""

from __future__ import annotations

import pandas as pd

from cxratlas.io import classifier_calls, slice_label
from cxratlas.slices.across import significant
from cxratlas.slices.leads import typical_images
from cxratlas.slices.plots import Tile, strip_sheet
from cxratlas.slices.run import AcrossSettings
from cxratlas.subgroups import subgroup_frame


def _value(meta: pd.DataFrame, groups: pd.DataFrame, column: str, image: str) -> str:
    """An image's value of a subgroup column or a finding, as its caption shows it."""
    if not column:
        return ""
    frame = groups if column in groups else meta
    if column not in frame or image not in frame.index:
        return ""
    v = frame.at[image, column]
    if pd.isna(v):
        return "?"
    if column in groups:  # the row's title names the column: its value alone fits
        return str(v)
    return f"{column}: {dict([(1, 'yes'), (0, 'no'), (-1, 'uncertain')]).get(int(v), v)}"


def tiles(rows: pd.DataFrame, meta, groups, column: str, thumbs: dict, threshold: float) -> list:
    out = []
    for r in rows.itertuples(index=False):
        call = classifier_calls([r.label], [r.score], threshold)[0]
        caption = [f"{call} · y={int(r.label)}", f"score {r.score:.3g}"]
        caption += [_value(meta, groups, column, r.image_id)] if column else []
        out.append(Tile(thumbs.get(r.image_id), caption))
    return out


def write_strips(table: pd.DataFrame, members: pd.DataFrame, manifest_path: str,
                 thumbnails: list[str], paths: dict[str, str], s: AcrossSettings):  # fmt: skip
    """One PNG per classifier (`paths`: classifier -> file)."""
    from cxratlas.io import atomic_path, read_manifest, read_thumbnails

    meta, columns = read_manifest(manifest_path)
    meta = meta.set_index("image_id")
    groups = subgroup_frame(meta, columns.attributes)
    sig = table[significant(table)].sort_values("drop", ascending=False)
    # a slice that recurs in several spaces is one row (its strongest), as it is one lead
    spaces = sig.groupby(["classifier", "recurrence"])["model"].nunique()
    sig = sig.drop_duplicates(["classifier", "recurrence"])
    key = ["classifier", "finding", "model", "slice"]
    by_slice = {k: g for k, g in members.groupby(key, sort=False)}
    for classifier, path in paths.items():
        own = sig[sig["classifier"] == classifier].head(s.max_strips)
        picks = {tuple(r[key]): typical_images(by_slice.get(tuple(r[key]), members.iloc[:0]),
                                                s.strip_images)
                 for _, r in own.iterrows()}  # fmt: skip
        thumbs = read_thumbnails(thumbnails, {i for v in picks.values() for i in v})
        rows = []
        for _, r in own.iterrows():
            m = by_slice[tuple(r[key])].set_index("image_id").loc[picks[tuple(r[key])]]
            n_spaces = int(spaces[(classifier, r["recurrence"])])
            also = f" (recurs in {n_spaces} spaces)" if n_spaces > 1 else ""
            where = r["model"]
            if r["method"] == "attribute":  # the same images on every map
                where, also = "manifest", ""
            title = (f"{where} · {slice_label(r['finding'], r['slice'])}{also} · "
                     f"n={r['n_images']} · {r['metric'].upper()} {r['auroc_in']:.2f} vs "
                     f"{r['auroc_out']:.2f} outside · p_adj {r['p_adj']:.1e} · "
                     f"{r['description']}")  # fmt: skip
            rows.append((title, tiles(m.reset_index(), meta, groups, r["attribute"], thumbs,
                                      float(r["threshold"]))))  # fmt: skip
        head = (
            f"{classifier}: the most typical errors of its flagged slices (BH p < {s.alpha}, "
            f"AUROC drop >= {s.min_drop}); "
            "under each image: call · label, score, the attribute the slice is described by"
        )
        with atomic_path(path) as tmp:
            tmp.write_bytes(strip_sheet(rows, head))
