"""One subgroup analysed: a selection brought back from the atlas, an id list or a query.

The images analysed are the atlas's (every model embedded them); the subgroup's members among
them are compared with the rest:

- Table 1 (`representativeness.sample_balance`: counts, shares and SMDs of every subgroup
  column, age and finding, members against the rest);
- its place in every model's space (`subgroup_placement`: compactness against random sets of
  the same size, the clusters that hold it);
- every classifier's AUROC inside against outside, BNSP and BPSN, with patient-bootstrap CIs
  (`subgroup_classifiers`);
- enrichment (`enrichment.enrichment`: each finding and attribute value inside against outside,
  odds ratio, Fisher p, Benjamini-Hochberg) and the dominant values;
- a contact sheet of seeded random members, each image captioned.

Every table carries a `subgroup` column naming what it holds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.analysis.subgroup_classifiers import PerformanceSettings, subgroup_performance
from cxratlas.analysis.subgroup_figures import TABLE1_NAMES
from cxratlas.analysis.subgroup_members import SubgroupSpec, members
from cxratlas.analysis.subgroup_placement import ModelSpace, cluster_table, p_text, placement


@dataclass(frozen=True)
class SubgroupSettings:
    """`analysis.subgroups` and the settings it shares with the probes and the audit."""

    random_sets: int = 1000  # random sets of the same size in the compactness null
    sheet_images: int = 24  # members on the contact sheet
    min_group: int = 10  # analysis.shortcuts.min_group
    bootstrap: int = 1000  # analysis.probes.bootstrap
    seed: int = 0  # analysis.seed

    @classmethod
    def from_config(cls, analysis: dict[str, Any]) -> SubgroupSettings:
        own = analysis["subgroups"]
        return cls(own["random_sets"], own["sheet_images"], analysis["shortcuts"]["min_group"],
                   analysis["probes"]["bootstrap"], analysis["seed"])  # fmt: skip

    @property
    def performance(self) -> PerformanceSettings:
        return PerformanceSettings(self.min_group, self.bootstrap, self.seed)


@dataclass
class Study:
    """The analysed images: the atlas's rows (thumbnails left on disk) and their manifest rows,
    in the atlas's order."""

    atlas: pd.DataFrame
    manifest: pd.DataFrame  # indexed by image_id
    findings: tuple[str, ...]
    attributes: tuple[str, ...]
    models: list[str]
    atlas_path: str

    @classmethod
    def load(cls, atlas_path: str, manifest_path: str) -> Study:
        import pyarrow.parquet as pq

        from cxratlas.io import ATLAS_IMAGE, atlas_models, read_manifest

        names = [c for c in pq.read_schema(atlas_path).names if c != ATLAS_IMAGE]
        atlas = pd.read_parquet(atlas_path, columns=names)
        manifest, columns = read_manifest(manifest_path)
        manifest = manifest.set_index("image_id").reindex(atlas["image_id"])
        findings = tuple(f for f in columns.findings if f in manifest)
        return cls(atlas, manifest, findings, columns.attributes, atlas_models(atlas_path),
                   atlas_path)  # fmt: skip

    @property
    def ids(self) -> pd.Index:
        return pd.Index(self.atlas["image_id"])

    @cached_property
    def spaces(self) -> list[ModelSpace]:
        return [ModelSpace.from_atlas(self.atlas, m) for m in self.models]


@dataclass
class SubgroupResult:
    members: pd.DataFrame  # image_id, in_atlas
    table1: pd.DataFrame
    placement: pd.DataFrame
    clusters: pd.DataFrame
    performance: pd.DataFrame
    enrichment: pd.DataFrame
    mask: np.ndarray  # over the atlas's rows

    def tables(self) -> dict[str, pd.DataFrame]:
        return {k: getattr(self, k) for k in ("members", "table1", "placement", "clusters",
                                              "performance", "enrichment")}  # fmt: skip


def table1(study: Study, ids: pd.Index) -> pd.DataFrame:
    """Members against the rest of the analysed images (`representativeness` names its parts
    archive / sample / rest: here all / subgroup / rest)."""
    from cxratlas.analysis.representativeness import sample_balance

    table = sample_balance(study.manifest, ids, study.findings, study.attributes)
    return table.rename(columns=TABLE1_NAMES)


def describe(study: Study, name: str, mask: np.ndarray) -> pd.DataFrame:
    """Each finding and each common value of every subgroup column (view, vendor, sex, age
    band, site, ...), members against the rest (the clusters' enrichment test)."""
    from cxratlas.analysis.enrichment import attribute_indicators, enrichment
    from cxratlas.subgroups import subgroup_frame

    manifest = study.manifest.reset_index()
    groups = subgroup_frame(manifest, study.attributes)
    indicators = attribute_indicators(groups, tuple(groups.columns))
    return enrichment({name: mask}, manifest[list(study.findings)], indicators)


def analyse_subgroup(
    spec: SubgroupSpec, study: Study, classifiers: list[pd.DataFrame], s: SubgroupSettings
) -> SubgroupResult:
    """Every table of one subgroup (figures and the contact sheet are drawn from it)."""
    from cxratlas.analysis.probes import patient_groups

    ids = members(spec, study.manifest)
    mask = study.ids.isin(ids)
    if not mask.any() or mask.all():
        raise ValueError(
            f"{spec.key}: {int(mask.sum())} of the atlas's {len(mask)} images are in the "
            "subgroup; it needs at least one inside and one outside"
        )
    inside = study.ids[mask]
    patients = patient_groups(study.manifest, study.ids)
    result = SubgroupResult(
        members=pd.DataFrame({"image_id": ids, "in_atlas": ids.isin(study.ids)}),
        table1=table1(study, inside),
        placement=pd.DataFrame(
            [placement(sp, mask, s.random_sets, s.seed) for sp in study.spaces]
        ).assign(listed=len(ids)),  # ids the entry names, `members` of them in the atlas
        clusters=pd.concat([cluster_table(sp, mask, spec.name) for sp in study.spaces]),
        performance=subgroup_performance(classifiers, inside, patients, s.performance),
        enrichment=describe(study, spec.name, mask),
        mask=mask,
    )
    for table in result.tables().values():
        table.insert(0, "subgroup", spec.name)
    return result


def _caption(row: pd.Series, findings: tuple[str, ...]) -> list[str]:
    """Three lines under a thumbnail: its id, view · sex · age, its positive findings."""
    sex = row.get("sex")
    age = pd.to_numeric(pd.Series([row.get("age")]), errors="coerce").iloc[0]
    parts = [str(v) for v in (row.get("view_position"), sex) if pd.notna(v) and v != ""]
    if pd.notna(age):
        parts.append(f"{age:.0f}")
    positive = [f for f in findings if pd.notna(row.get(f)) and row.get(f) == 1]
    return [str(row.name), " · ".join(parts) or "view, sex, age unknown",
            ", ".join(positive) or "no positive finding"]  # fmt: skip


def sheet_members(study: Study, mask: np.ndarray, k: int, seed: int) -> pd.Index:
    """`k` seeded random members (all of them in a smaller subgroup), in atlas order."""
    rows = np.flatnonzero(mask)
    picked = np.random.default_rng(seed).choice(rows, min(k, len(rows)), replace=False)
    return study.ids[np.sort(picked)]


def subgroup_sheet(
    study: Study, spec: SubgroupSpec, mask: np.ndarray, s: SubgroupSettings
) -> bytes:
    """The contact sheet: seeded random members, each with its caption."""
    import pyarrow.parquet as pq

    from cxratlas.io import ATLAS_IMAGE

    ids = sheet_members(study, mask, s.sheet_images, s.seed)
    table = pq.read_table(study.atlas_path, columns=["image_id", ATLAS_IMAGE],
                          filters=[("image_id", "in", list(ids))]).to_pydict()  # fmt: skip
    thumbs = dict(zip(table["image_id"], table[ATLAS_IMAGE], strict=True))
    items = [(thumbs.get(i), _caption(study.manifest.loc[i], study.findings)) for i in ids]
    title = (f"{spec.name} ({spec.source}): {len(ids)} of its {int(mask.sum())} images, "
             "drawn at random")  # fmt: skip
    return captioned_sheet(items, title)


def captioned_sheet(items: list[tuple[bytes | None, list[str]]], title: str, columns: int = 8,
                    thumb: int = 96) -> bytes:  # fmt: skip
    """One PNG: the thumbnails in a grid, each with its caption lines under it."""
    from PIL import Image, ImageDraw

    from cxratlas.analysis.strips import fit
    from cxratlas.analysis.strips import font as sheet_font

    font, pad, line = sheet_font(11), 6, 13
    lines = max((len(c) for _, c in items), default=0)
    cell_w, cell_h = thumb + pad, thumb + lines * line + pad
    rows = max(1, -(-len(items) // columns))
    width = max(columns * cell_w + pad, 480)
    sheet = Image.new("L", (width, 24 + rows * cell_h), color=255)
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), title, fill=0, font=font)
    for i, (png, caption) in enumerate(items):
        x, y = pad + (i % columns) * cell_w, 24 + (i // columns) * cell_h
        if png is not None:
            with Image.open(io.BytesIO(png)) as img:
                img = img.convert("L")
                img.thumbnail((thumb, thumb))
                sheet.paste(img, (x, y))
        for j, text in enumerate(caption):
            draw.text((x, y + thumb + 1 + j * line), fit(text, cell_w - 2, font), fill=60,
                      font=font)  # fmt: skip
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


SUBGROUP_META_KEY = b"cxratlas.subgroup"  # a subgroup table's footer: its name and source


def write_subgroup_table(frame: pd.DataFrame, path: str, spec: SubgroupSpec) -> None:
    """A subgroup's table, its footer naming the subgroup and where it came from."""
    import json

    import pyarrow as pa

    from cxratlas.io import write_parquet

    table = pa.Table.from_pandas(frame, preserve_index=False)
    named = json.dumps({"subgroup": spec.name, "source": spec.source})
    meta = {**(table.schema.metadata or {}), SUBGROUP_META_KEY: named}
    write_parquet(table.replace_schema_metadata(meta), path)


def run_subgroup(
    spec: SubgroupSpec, inputs: dict[str, Any], s: SubgroupSettings, out: dict[str, str]
) -> SubgroupResult:
    """The rule's work: `inputs` has atlas, manifest, probe_scores and classifiers (score
    files); `out` the rule's outputs by name."""
    from pathlib import Path

    from cxratlas.analysis.subgroup_classifiers import probe_classifiers, read_classifier
    from cxratlas.analysis.subgroup_figures import (
        performance_figure,
        placement_figure,
        table1_figure,
    )
    from cxratlas.io import atomic_path, write_tsv

    study = Study.load(inputs["atlas"], inputs["manifest"])
    probes = probe_classifiers(pd.read_parquet(inputs["probe_scores"]))
    classifiers = [probes, *(read_classifier(p) for p in inputs["classifiers"])]
    result = analyse_subgroup(spec, study, classifiers, s)
    for name, table in result.tables().items():
        write_subgroup_table(table, out[name], spec)
    for name in ("table1", "placement", "clusters", "performance"):
        write_tsv(getattr(result, name), out[f"{name}_tsv"], float_format="%.4g")
    n = int(result.mask.sum())
    title = f"{spec.name} ({spec.source}): {n} of {len(result.mask)} images"
    placement_figure(study.spaces, result.mask, result.placement, title, out["maps"])
    performance_figure(result.performance, title, out["performance_figure"])
    table1_figure(result.table1, f"Table 1: {title}, against the rest", out["table1_figure"])
    with atomic_path(out["sheet"]) as tmp:
        Path(tmp).write_bytes(subgroup_sheet(study, spec, result.mask, s))
    return result


OVERVIEW_COLUMNS = ["subgroup", "source", "members", "in_atlas", "model", "knn_share",
                    "knn_null_mean", "knn_p", "spread_ratio", "spread_p", "top_cluster",
                    "top_cluster_share"]  # fmt: skip


def subgroup_source(path: str) -> str:
    """What a subgroup table's footer says the subgroup is (`SubgroupSpec.source`)."""
    import json

    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    if SUBGROUP_META_KEY not in meta:
        raise ValueError(f"{path}: not a subgroup table (no {SUBGROUP_META_KEY.decode()} key)")
    return json.loads(meta[SUBGROUP_META_KEY])["source"]


def overview(placements: list[str], member_files: list[str]) -> pd.DataFrame:
    """One row per subgroup and model: its size, where it came from, how compact it is and
    the cluster holding most of it (`OVERVIEW_COLUMNS`); tables paired by their `subgroup`."""
    sizes = {}  # subgroup -> (source, ids listed, ids in the atlas)
    for path in member_files:
        m = pd.read_parquet(path)
        sizes[m["subgroup"].iloc[0]] = (subgroup_source(path), len(m), int(m["in_atlas"].sum()))
    frame = pd.concat([pd.read_parquet(p) for p in placements], ignore_index=True)
    parts = pd.DataFrame([(name, *v) for name, v in sizes.items()],
                         columns=["subgroup", "source", "members", "in_atlas"])  # fmt: skip
    frame = frame.drop(columns="members").merge(parts, on="subgroup", validate="many_to_one")
    return frame[OVERVIEW_COLUMNS]


def _size(row: pd.Series) -> str:
    """ "42 images", or "42 of its 47 images: 5 not in the atlas" (`absent: drop`)."""
    listed = row.get("listed", row.members)
    if listed > row.members:
        return f"{row.members} of its {listed} images: {listed - row.members} not in the atlas"
    return f"{row.members} images"


def subgroup_lines(
    placements: list[str], performances: list[str], alpha: float = 0.05
) -> list[str]:
    """A line per subgroup for the summary (bold in Markdown's way): its size, the model whose space
    gathers it most (kNN share against random sets), and the classifier and finding whose
    AUROC inside differs most from outside with a CI clear of zero."""
    place = pd.concat([pd.read_parquet(p) for p in placements], ignore_index=True)
    perf = pd.concat([pd.read_parquet(p) for p in performances], ignore_index=True)
    lines = []
    for name, rows in place.groupby("subgroup", sort=False):
        best = rows.loc[rows["knn_z"].fillna(-np.inf).idxmax()]
        gathered = "gathered" if best.knn_p < alpha else "not gathered more than random sets"
        line = (f"**{name}** ({_size(best)}): {gathered} in {best.model}'s space "
                f"(kNN share {best.knn_share:.2f} against {best.knn_null_mean:.2f} for random "
                f"sets, {p_text(best.knn_p, best.random_sets)}); most of it in "
                f"{best.top_cluster or 'noise'} "
                f"({best.top_cluster_share:.0%})")  # fmt: skip
        own = perf[perf["subgroup"] == name]
        gaps = own[(own["delta_high"] < 0) | (own["delta_low"] > 0)]
        if len(gaps):
            g = gaps.loc[gaps["delta"].abs().idxmax()]
            line += (f"; {g.classifier} on {g.finding}: AUROC {g.auroc_in:.2f} inside against "
                     f"{g.auroc_out:.2f} outside (difference {g.delta:+.2f}, 95% CI "
                     f"{g.delta_low:+.2f} to {g.delta_high:+.2f})")  # fmt: skip
        lines.append(line)
    return lines
