"""The leads: the few things most worth a researcher's next hour, each with its evidence (numbers
with CIs), captioned example images and where to find it in the atlas, traced to a table under
`results/analysis/`.

Kinds, in the order the ranking takes them (`KINDS`):

1. `shortcut`: a finding the audit flags (`shortcuts/confounding.tsv`, `flagged`); strength: the
   within-site drop of its AUROC, or how close the metadata alone come to it.
2. `cluster_attribute`: a cluster made of one view, vendor, site or dataset (`clusters/<m>/
   enrichment.parquet`, kind attribute): at least `MIN_SHARE` of the cluster, BH-adjusted p below
   `ALPHA`, odds ratio at least `MIN_ODDS`; strength: share × log2(share / share in the sample).
   Every value of another column that dominates the same cluster as well is named with it: they
   coincide there, and the cluster cannot say which of them the model separates by.
3. `cluster_finding`: a cluster where a finding is concentrated (kind finding, p below `ALPHA`,
   odds ratio at least `MIN_ODDS`, `MIN_POSITIVES` positives in it); strength: log2(odds ratio).
4. `subgroup_gap`: a finding probe that works less well in one subgroup, the two subgroups' CIs
   apart (`shortcuts/gaps.parquet`, `separated`), where the pooled probe's CI is above chance;
   strength: the AUROC gap.
5. `error_slice`: where a classifier fails (the error slices stage's own collector,
   `cxratlas.slices.leads`, passed in as `extra`): one lead per recurrence across models;
   strength: the AUROC drop inside the slice.
6. `outliers`: each model's outlier region (the top `outlier_quantile` of its outlier score);
   strength: how far its mean score sits above the rest (ratio - 1).
7. `disagreement`: the images the models agree on least (`disagreement/images.parquet`),
   against the mean agreement of the whole sample; strength: 1 - their mean agreement.
8. `fragile`: a finding whose probe, trained on labels of which 10 % were flipped and scored
   against the original labels, loses `FRAGILE_DROP` AUROC or more, with its interval over the
   draws wholly below the interval without flips (`label_noise/label_noise.parquet`);
   strength: the drop.

The same kind and subject on several models (a shortcut, a gap, a fragile finding, an attribute
that makes a cluster, a finding that gathers, the outlier regions) is one lead that lists the
models, its evidence that of the strongest. Odds ratios are Haldane-Anscombe corrected (0.5
added to each cell); where a cell is zero the text gives the shares instead, since the ratio
then rests on the correction.

Ranking rule: round robin over the kinds: the strongest lead of every kind in kind order, then
the second of every kind, and so on; within a kind by strength. The summary shows the first
`TOP_LEADS`; `results/summary/leads.parquet` holds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxratlas.analysis.label_noise import noise_summary
from cxratlas.subgroups import subgroup_frame

KINDS = ("shortcut", "cluster_attribute", "cluster_finding", "subgroup_gap", "error_slice",
         "outliers", "disagreement", "fragile")  # fmt: skip
TOP_LEADS = 10
MIN_SHARE = 0.6
MIN_ODDS = 4.0
MIN_POSITIVES = 5
ALPHA = 0.05
FRAGILE_DROP = 0.05
FRAGILE_AT = 0.1  # the fraction of flipped labels a fragile lead reads
IMAGES = 8  # example thumbnails per lead


@dataclass
class Lead:
    kind: str
    models: list[str]
    subject: str  # what the lead says, without the models it holds on
    evidence: str
    where: str  # in the atlas: the view, the name, the filter to click
    source: str  # the table (and rows) every number comes from
    strength: float
    images: list[str] = field(default_factory=list)
    captions: dict[str, list[str]] = field(default_factory=dict)  # per image: its lines
    legend: str = ""  # what the caption lines under each image are
    key: tuple = ()  # leads of one kind and key on several models are one lead
    short: str = ""  # the evidence in a few words, for the other models of a merged lead

    @property
    def title(self) -> str:
        return f"{self.subject} ({join_names(self.models)})"


def join_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


@dataclass
class Study:
    """What the leads are drawn from: the workflow's own tables (no second code path)."""

    models: list[str]
    confounding: pd.DataFrame
    gaps: pd.DataFrame
    subgroups: pd.DataFrame
    enrichment: dict[str, pd.DataFrame]
    names: dict[str, dict[str, str]]
    reduced: dict[str, pd.DataFrame]  # image_id, cluster, outlier, pagerank
    manifest: pd.DataFrame  # indexed by image_id
    disagreement: pd.DataFrame | None = None
    label_noise: pd.DataFrame | None = None
    outlier_quantile: float = 0.95
    attributes: tuple[str, ...] = ()
    mean_agreement: float | None = None  # over the whole sample (compare/models.parquet)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # what the atlas shows

    def label(self, model: str, group: str) -> str:
        """A cluster's short label, as the atlas's legends and count plots show it."""
        return self.labels.get(model, {}).get(group) or self.names[model].get(group, group)

    def members(self, model: str, group: str) -> pd.DataFrame:
        red = self.reduced[model]
        if group == "outliers":
            return red[red["outlier"] > red["outlier"].quantile(self.outlier_quantile)]
        return red[red["cluster"] == int(group[1:])]

    def representatives(self, model: str, group: str) -> list[str]:
        """The members most central to the group (highest PageRank): what it looks like."""
        rows = self.members(model, group).sort_values("pagerank", ascending=False)
        return rows["image_id"].head(IMAGES).tolist()

    def captions(self, images: list[str], findings=(), columns=(), first: str = "") -> tuple:
        """(per image: each finding's label (+, - or ?) and each column's value, the legend
        that says what the lines are); `first` names a line a collector puts first."""
        groups = subgroup_frame(self.manifest.reindex(images), self.attributes)
        out = {}
        for image in images:
            lines = [f"{f} {label_mark(self.manifest, image, f)}" for f in findings]
            lines += [_value(groups, image, c) for c in columns]
            out[image] = lines
        parts = [first] if first else []
        parts += [f"{f} (+ positive, - negative, ? unlabelled)" for f in findings]
        return out, "under each image: " + "; ".join([*parts, *columns])


def label_mark(manifest: pd.DataFrame, image: str, finding: str) -> str:
    value = manifest.at[image, finding] if image in manifest.index else pd.NA
    return {1: "+", 0: "-"}.get(int(value) if pd.notna(value) else None, "?")


def _value(groups: pd.DataFrame, image: str, column: str) -> str:
    value = groups.at[image, column] if column in groups else pd.NA
    return str(value) if pd.notna(value) else "?"


def _mapped(reduced: pd.DataFrame, ids: pd.Index) -> list[str]:
    """The first IMAGES of `ids` on this model's map, most central (PageRank) first."""
    rows = reduced[reduced["image_id"].isin(ids)].sort_values("pagerank", ascending=False)
    return rows["image_id"].head(IMAGES).tolist()


def _ci(low, high) -> str:
    return f"95% CI {low:.2f}-{high:.2f}"


def odds_text(r) -> str:
    """An enrichment row's odds ratio, or its shares where a cell is zero (the ratio would rest
    on the 0.5 added to each cell)."""
    if r.prevalence_in in (0.0, 1.0) or r.prevalence_out in (0.0, 1.0):
        return (f"{r.prevalence_in:.0%} inside against {r.prevalence_out:.0%} outside; no odds "
                f"ratio: a cell of its 2x2 table is empty")  # fmt: skip
    return f"odds ratio {r.odds_ratio:.1f}"


def shortcut_leads(s: Study) -> list[Lead]:
    out = []
    for r in s.confounding[s.confounding["flagged"].astype(bool)].itertuples():
        within = np.nanmax([r.within_site_auroc, r.within_site_scored_auroc])
        drop = r.pooled_auroc - within if np.isfinite(within) else 0.0
        closeness = 1 - abs(r.pooled_auroc - r.metadata_auroc)
        positives = s.manifest.index[(s.manifest[r.finding] == 1).fillna(False).to_numpy()]
        images = _mapped(s.reduced[r.model], positives)
        site = r.site if isinstance(r.site, str) and r.site else "site"
        out.append(Lead(
            "shortcut", [r.model], f"{r.finding} may be the {site}",
            f"pooled AUROC {r.pooled_auroc:.2f} ({_ci(r.pooled_ci_low, r.pooled_ci_high)}); "
            f"{r.reason}",
            f"{r.model}'s map coloured by {site}; filter {r.finding} = positive",
            f"results/analysis/shortcuts/confounding.tsv: finding={r.finding}, model={r.model}",
            float(max(drop, closeness - 0.9)), images,
            *s.captions(images, [r.finding], [site] if site != "site" else []),
            key=(r.finding, site),
            short=f"within-{site} AUROC {within:.2f} against pooled {r.pooled_auroc:.2f}",
        ))  # fmt: skip
    return out


def _overall(r) -> float:
    """A value's share of the whole sample, from a group's enrichment row."""
    n_in = r.size
    out = r.prevalence_out if np.isfinite(r.prevalence_out) else 0.0
    return (r.positives_in + out * (r.n_total - n_in)) / r.n_total


def _dominant_values(table: pd.DataFrame, n_total: int) -> pd.DataFrame:
    """The attribute values that make up a cluster (the kind's thresholds), with their share in
    the sample and strength."""
    rows = table[(table["kind"] == "attribute") & table["group"].str.match(r"c\d+$")]
    rows = rows[(rows["prevalence_in"] >= MIN_SHARE) & (rows["p_adjusted"] < ALPHA)
                & (rows["odds_ratio"] >= MIN_ODDS)].assign(n_total=n_total)  # fmt: skip
    if rows.empty:
        return rows
    rows = rows.assign(overall=[_overall(r) for r in rows.itertuples()])
    lift = rows["prevalence_in"] / rows["overall"]
    rows = rows.assign(strength=rows["prevalence_in"] * np.log2(lift),
                       column=rows["finding"].str.split("=", n=1).str[0],
                       value=rows["finding"].str.split("=", n=1).str[1])  # fmt: skip
    return rows.sort_values("strength", ascending=False)


def _together(s: Study, model: str, values: pd.DataFrame) -> str:
    """How often the cluster's dominant values go together in the whole sample: the first
    value's images that have each other value."""
    sample = s.manifest.reindex(s.reduced[model]["image_id"])
    groups = subgroup_frame(sample, s.attributes)
    first = values.iloc[0]
    holders = groups[first.column] == first.value
    parts = []
    for r in values.iloc[1:].itertuples():
        share = float((groups.loc[holders.fillna(False), r.column] == r.value).mean())
        parts.append(f"{share:.0%} of all {first.value} images have {r.column} = {r.value}")
    return "; in the whole sample " + "; ".join(parts) if parts else ""


def cluster_attribute_leads(s: Study) -> list[Lead]:
    out = []
    for m, table in s.enrichment.items():
        rows = _dominant_values(table, len(s.reduced[m]))
        for group, values in rows.groupby("group", sort=False):
            values = values.drop_duplicates("column")  # one value per column dominates
            r, name = values.iloc[0], s.names[m].get(group, group)
            made = " and ".join(f"{v.prevalence_in:.0%} {v.column} = {v.value}"
                                for v in values.itertuples())  # fmt: skip
            shares = "; ".join(f"{v.value}: {v.prevalence_in:.0%} of its {v.size} images against "
                               f"{v.overall:.0%} of the sample ({odds_text(v)}, BH-adjusted p "
                               f"{v.p_adjusted:.1e})" for v in values.itertuples())  # fmt: skip
            if len(values) > 1:
                why = (f": {join_names(list(values['column']))} coincide in this cluster, so it "
                       f"cannot tell which of them the model separates by"
                       f"{_together(s, m, values)}")  # fmt: skip
            else:
                why = f": the model separates these images by {r.column} (or by what goes with it)"
            images = s.representatives(m, group)
            out.append(Lead(
                "cluster_attribute", [m], f"a cluster that is {made}", shares + why,
                f"{m}'s map: click {s.label(m, group)!r} in the cluster_label_{m} count plot",
                f"results/analysis/clusters/{m}/enrichment.parquet: group={group}, "
                f"finding={', '.join(values['finding'])}",
                float(r.strength), images, *s.captions(images, (), list(values["column"])),
                key=tuple(values["finding"]), short=f"{name!r}, {r['size']} images",
            ))  # fmt: skip
    return out


def cluster_finding_leads(s: Study) -> list[Lead]:
    out = []
    for m, table in s.enrichment.items():
        rows = table[(table["kind"] == "finding") & table["group"].str.match(r"c\d+$")]
        rows = rows[(rows["p_adjusted"] < ALPHA) & (rows["odds_ratio"] >= MIN_ODDS)
                    & (rows["positives_in"] >= MIN_POSITIVES)]  # fmt: skip
        for r in rows.sort_values("odds_ratio", ascending=False).itertuples():
            name = s.names[m].get(r.group, r.group)
            images = s.representatives(m, r.group)
            out.append(Lead(
                "cluster_finding", [m], f"{r.finding} gathers in one cluster",
                f"{m}'s cluster {name!r}: {r.prevalence_in:.0%} positive inside "
                f"({r.positives_in} of the {round(r.positives_in / r.prevalence_in)} labelled "
                f"of its {r.size} images) against {r.prevalence_out:.0%} outside "
                f"({odds_text(r)}, BH-adjusted p {r.p_adjusted:.1e})",
                f"{m}'s map: click {s.label(m, r.group)!r} in the cluster_label_{m} count "
                f"plot, then {r.finding} in the findings plot",
                f"results/analysis/clusters/{m}/enrichment.parquet: group={r.group}, "
                f"finding={r.finding}",
                float(np.log2(r.odds_ratio)), images,
                *s.captions(images, [r.finding], ["view_position"]), key=(r.finding,),
                short=f"{name!r}, {r.prevalence_in:.0%} positive",
            ))  # fmt: skip
    return out


def gap_leads(s: Study) -> list[Lead]:
    out = []
    ci = s.subgroups.set_index(["finding", "model", "attribute", "group"])
    groups = subgroup_frame(s.manifest, s.attributes)
    for r in separated_gaps(s.gaps, s.confounding).itertuples():
        best = ci.loc[(r.finding, r.model, r.attribute, r.best_group)]
        worst = ci.loc[(r.finding, r.model, r.attribute, r.worst_group)]
        in_worst = s.manifest.index[(groups[r.attribute] == r.worst_group).fillna(False)]
        images = _mapped(s.reduced[r.model], in_worst)
        out.append(Lead(
            "subgroup_gap", [r.model],
            f"{r.finding}'s probe works less well for {r.attribute} = {r.worst_group}",
            f"AUROC {r.worst_auroc:.2f} ({_ci(worst.ci_low, worst.ci_high)}) for "
            f"{r.worst_group} against {r.best_auroc:.2f} ({_ci(best.ci_low, best.ci_high)}) "
            f"for {r.best_group}: the CIs are apart",
            f"{r.model}'s map coloured by {r.finding}; filter {r.attribute} = {r.worst_group}",
            f"results/analysis/shortcuts/gaps.parquet and subgroups.parquet: "
            f"finding={r.finding}, model={r.model}, attribute={r.attribute}",
            float(r.gap), images, *s.captions(images, [r.finding], [r.attribute]),
            key=(r.finding, r.attribute, r.worst_group),
            short=f"{r.worst_auroc:.2f} against {r.best_auroc:.2f}",
        ))  # fmt: skip
    return out


def separated_gaps(gaps: pd.DataFrame, confounding: pd.DataFrame) -> pd.DataFrame:
    """The gaps whose two subgroups' CIs are apart, where the finding's pooled probe works (its
    CI above chance, as the audit asks before it flags): with shuffled labels, chance gaps would
    be leads. Largest first."""
    works = confounding[confounding["pooled_ci_low"] > 0.5][["finding", "model"]]
    gaps = gaps[gaps["separated"].astype(bool)].merge(works, on=["finding", "model"])
    return gaps.sort_values("gap", ascending=False)


def outlier_leads(s: Study) -> list[Lead]:
    out = []
    for m in s.models:
        red = s.reduced[m]
        region = s.members(m, "outliers")
        rest = red.drop(region.index)
        if region.empty or rest.empty:
            continue
        ratio = float(region["outlier"].mean() / max(rest["outlier"].mean(), 1e-12))
        enr = s.enrichment[m]
        top = enr[(enr["group"] == "outliers") & (enr["p_adjusted"] < ALPHA)
                  & (enr["odds_ratio"] >= MIN_ODDS)]  # fmt: skip
        top = top.sort_values("odds_ratio", ascending=False)
        made_of = "; enriched for " + ", ".join(
            f"{r.finding} ({r.prevalence_in:.0%} inside, {odds_text(r)})"
            for r in top.head(3).itertuples()) if len(top) else ""  # fmt: skip
        cut = float(red["outlier"].quantile(s.outlier_quantile))
        ranked = region.sort_values("outlier", ascending=False).head(IMAGES)
        images = ranked["image_id"].tolist()
        captions, legend = s.captions(images, (), ["view_position"], "outlier score")
        for i, score in zip(images, ranked["outlier"], strict=True):
            captions[i].insert(0, f"{score:.3f}")
        out.append(Lead(
            "outliers", [m], "an outlier region on the map",
            f"{m}: {len(region)} images in the top {1 - s.outlier_quantile:.0%} of the outlier "
            f"score (mean cosine distance to the k neighbours), {ratio:.1f}x the rest's mean"
            f"{made_of}; check them for inverted, rotated, cropped or mislabelled films",
            f"{m}'s map: brush outlier_{m} above {cut:.3f}",
            f"results/analysis/clusters/{m}/enrichment.parquet: group=outliers; "
            f"results/reduce/{m}/reduced.parquet: outlier",
            ratio - 1, images, captions, legend, key=("outliers",),
            short=f"{len(region)} images, {ratio:.1f}x the rest",
        ))  # fmt: skip
    return out


def disagreement_leads(s: Study) -> list[Lead]:
    d = s.disagreement
    if d is None or d.empty:
        return []
    worst = d.sort_values("agreement").head(IMAGES)
    mean = float(worst["agreement"].mean())
    baseline = s.mean_agreement if s.mean_agreement is not None else float(d["agreement"].mean())
    images = worst["image_id"].tolist()
    captions, legend = s.captions(images, (), ["view_position"], "agreement")
    for i, a in zip(images, worst["agreement"], strict=True):
        captions[i].insert(0, f"{a:.2f}")
    return [Lead(
        "disagreement", list(s.models), f"{len(worst)} images the models place most differently",
        f"the share of an image's neighbours that the other models keep averages {mean:.0%} "
        f"for these images, against {baseline:.0%} over the whole sample",
        f"any map: brush agreement below {float(worst['agreement'].max()):.2f}",
        "results/analysis/disagreement/images.parquet: agreement; "
        "results/analysis/compare/models.parquet: mean_agreement",
        1 - mean, images, captions, legend, key=("disagreement",),
    )]  # fmt: skip


def fragile_leads(s: Study) -> list[Lead]:
    t = s.label_noise
    if t is None or t.empty or "auroc_clean" not in t or (t["status"] != "scored").all():
        return []
    out = []
    summary = noise_summary(t)
    for (m, finding), sub in summary.groupby(["model", "finding"], sort=False):
        sub = sub.set_index("fraction")
        if 0.0 not in sub.index or FRAGILE_AT not in sub.index:
            continue
        before, after = sub.loc[0.0], sub.loc[FRAGILE_AT]
        drop = float(before["auroc_clean"] - after["auroc_clean"])
        apart = after["auroc_clean_high"] < before["auroc_clean_low"]
        if drop < FRAGILE_DROP or not apart or not before["auroc_clean_low"] > 0.5:
            continue
        out.append(Lead(
            "fragile", [m], f"{finding}'s probe is fragile under label noise",
            f"trained on labels of which {FRAGILE_AT:.0%} were flipped at random and scored "
            f"against the original labels, the probe's AUROC falls from "
            f"{before['auroc_clean']:.2f} (95% interval {before['auroc_clean_low']:.2f}-"
            f"{before['auroc_clean_high']:.2f} over {int(before['repeats'])} draws) to "
            f"{after['auroc_clean']:.2f} ({after['auroc_clean_low']:.2f}-"
            f"{after['auroc_clean_high']:.2f}): label errors harm what it learns, beyond "
            f"scoring against wrong labels; audit its labels before trusting its number",
            f"{m}'s map coloured by {finding}",
            f"results/analysis/label_noise/label_noise.parquet: model={m}, finding={finding}",
            drop, key=(finding,), short=f"{before['auroc_clean']:.2f} to "
                                        f"{after['auroc_clean']:.2f}",
        ))  # fmt: skip
    return out


COLLECTORS = {"shortcut": shortcut_leads, "cluster_attribute": cluster_attribute_leads,
              "cluster_finding": cluster_finding_leads, "subgroup_gap": gap_leads,
              "outliers": outlier_leads, "disagreement": disagreement_leads,
              "fragile": fragile_leads}  # fmt: skip


def merge_across_models(leads: list[Lead]) -> list[Lead]:
    """One lead per kind and key: the strongest model's lead, naming every model it holds on
    and the others' evidence in short."""
    groups: dict[tuple, list[Lead]] = {}
    for lead in leads:
        groups.setdefault((lead.kind, lead.key or id(lead)), []).append(lead)
    out = []
    for same in groups.values():
        same = sorted(same, key=lambda x: -x.strength)
        first = same[0]
        if len(same) > 1:
            others = "; ".join(f"{join_names(x.models)}: {x.short}" for x in same[1:])
            files = dict.fromkeys(x.source.split(":")[0] for x in same[1:])
            extra = "; ".join(f for f in files if f != first.source.split(":")[0])
            first = Lead(
                first.kind, list(dict.fromkeys(m for x in same for m in x.models)), first.subject,
                f"{first.evidence}. The same on {others}", first.where,
                first.source + (f"; {extra}" if extra else ""), first.strength, first.images,
                first.captions, first.legend, first.key, first.short,
            )  # fmt: skip
        out.append(first)
    return out


def rank_leads(leads: list[Lead]) -> list[Lead]:
    """The ranking rule (module docstring): round robin over KINDS, strongest first."""
    by_kind = {k: sorted((x for x in leads if x.kind == k), key=lambda x: -x.strength)
               for k in dict.fromkeys((*KINDS, *(x.kind for x in leads)))}  # fmt: skip
    ranked = []
    for i in range(max((len(v) for v in by_kind.values()), default=0)):
        ranked += [v[i] for v in by_kind.values() if i < len(v)]
    return ranked


def find_leads(s: Study, extra: list[Lead] = ()) -> list[Lead]:
    """Every kind's leads (and `extra` ones, such as error slices), merged across models and
    ranked."""
    found = [lead for kind in KINDS if kind in COLLECTORS for lead in COLLECTORS[kind](s)]
    return rank_leads(merge_across_models([*found, *extra]))


def leads_table(leads: list[Lead]) -> pd.DataFrame:
    rows = [{"rank": i + 1, "kind": x.kind, "model": ", ".join(x.models), "title": x.title,
             "evidence": x.evidence, "where": x.where, "source": x.source,
             "strength": x.strength, "images": list(x.images),
             "captions": [" · ".join(x.captions.get(image, [])) for image in x.images]}
            for i, x in enumerate(leads)]  # fmt: skip
    return pd.DataFrame(rows, columns=["rank", "kind", "model", "title", "evidence", "where",
                                       "source", "strength", "images", "captions"])  # fmt: skip


def top_leads_text(path: str, n: int = 5) -> str:
    """The first `n` leads of a leads table, one line each (the console after a run)."""
    table = pd.read_parquet(path, columns=["rank", "title", "evidence"]).head(n)
    return "\n".join(f"  {r.rank}. {r.title}: {r.evidence}" for r in table.itertuples())
