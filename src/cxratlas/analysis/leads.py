"""The leads: the few things most worth a researcher's next hour, each with its evidence (numbers
with CIs), example images and where to find it in the atlas, traced to a table under
`results/analysis/`.

Kinds, in the order the ranking takes them (`KINDS`):

1. `shortcut`: a finding the audit flags (`shortcuts/confounding.tsv`, `flagged`); strength: the
   within-site drop of its AUROC, or how close the metadata alone come to it.
2. `cluster_attribute`: a cluster made of one view, vendor, site or dataset (`clusters/<m>/
   enrichment.parquet`, kind attribute): at least `MIN_SHARE` of the cluster, BH-adjusted p below
   `ALPHA`, odds ratio at least `MIN_ODDS`; strength: share × log2(share / share in the sample),
   one lead per cluster (its strongest value).
3. `cluster_finding`: a cluster where a finding is concentrated (kind finding, p below `ALPHA`,
   odds ratio at least `MIN_ODDS`, `MIN_POSITIVES` positives in it); strength: log2(odds ratio).
4. `subgroup_gap`: a finding probe that works less well in one subgroup, the two subgroups' CIs
   apart (`shortcuts/gaps.parquet`, `separated`), where the pooled probe's CI is above chance;
   strength: the AUROC gap.
5. `outliers`: each model's outlier region (the top `outlier_quantile` of its outlier score);
   strength: how far its mean score sits above the rest (ratio - 1).
6. `disagreement`: the images the models agree on least (`disagreement/images.parquet`);
   strength: 1 - their mean agreement.
7. `fragile`: a finding whose conclusions 10 % of flipped labels overturn (`label_noise/
   label_noise.parquet`): the probe AUROC falls by `FRAGILE_DROP` or more; strength: the drop.

Ranking rule: round robin over the kinds: the strongest lead of every kind in kind order, then
the second of every kind, and so on; within a kind by strength. The summary shows the first
`TOP_LEADS`; `results/summary/leads.parquet` holds them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxratlas.subgroups import subgroup_frame

KINDS = ("shortcut", "cluster_attribute", "cluster_finding", "subgroup_gap", "outliers",
         "disagreement", "fragile")  # fmt: skip
TOP_LEADS = 10
MIN_SHARE = 0.6
MIN_ODDS = 4.0
MIN_POSITIVES = 5
ALPHA = 0.05
FRAGILE_DROP = 0.05
IMAGES = 8  # example thumbnails per lead


@dataclass
class Lead:
    kind: str
    model: str
    title: str
    evidence: str
    where: str  # in the atlas: the view, the name, the filter to click
    source: str  # the table (and rows) every number comes from
    strength: float
    images: list[str] = field(default_factory=list)


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

    def members(self, model: str, group: str) -> pd.DataFrame:
        red = self.reduced[model]
        if group == "outliers":
            return red[red["outlier"] > red["outlier"].quantile(self.outlier_quantile)]
        return red[red["cluster"] == int(group[1:])]

    def representatives(self, model: str, group: str) -> list[str]:
        """The members most central to the group (highest PageRank): what it looks like."""
        rows = self.members(model, group).sort_values("pagerank", ascending=False)
        return rows["image_id"].head(IMAGES).tolist()


def _mapped(reduced: pd.DataFrame, ids: pd.Index) -> list[str]:
    """The first IMAGES of `ids` on this model's map, most central (PageRank) first."""
    rows = reduced[reduced["image_id"].isin(ids)].sort_values("pagerank", ascending=False)
    return rows["image_id"].head(IMAGES).tolist()


def _ci(low, high) -> str:
    return f"95% CI {low:.2f}-{high:.2f}"


def shortcut_leads(s: Study) -> list[Lead]:
    out = []
    for r in s.confounding[s.confounding["flagged"].astype(bool)].itertuples():
        within = np.nanmax([r.within_site_auroc, r.within_site_scored_auroc])
        drop = r.pooled_auroc - within if np.isfinite(within) else 0.0
        closeness = 1 - abs(r.pooled_auroc - r.metadata_auroc)
        positives = s.manifest.index[(s.manifest[r.finding] == 1).fillna(False).to_numpy()]
        images = _mapped(s.reduced[r.model], positives)
        out.append(Lead(
            "shortcut", r.model, f"{r.finding} on {r.model} may be the {r.site or 'site'}",
            f"pooled AUROC {r.pooled_auroc:.2f} ({_ci(r.pooled_ci_low, r.pooled_ci_high)}); "
            f"{r.reason}",
            f"{r.model}'s map coloured by {r.site or 'site'}; filter {r.finding} = positive",
            f"results/analysis/shortcuts/confounding.tsv: finding={r.finding}, model={r.model}",
            float(max(drop, closeness - 0.9)), images,
        ))  # fmt: skip
    return out


def _overall(r) -> float:
    """A value's share of the whole sample, from a group's enrichment row."""
    n_in = r.size
    out = r.prevalence_out if np.isfinite(r.prevalence_out) else 0.0
    return (r.positives_in + out * (r.n_total - n_in)) / r.n_total


def cluster_attribute_leads(s: Study) -> list[Lead]:
    out = []
    for m, table in s.enrichment.items():
        n_total = len(s.reduced[m])
        rows = table[(table["kind"] == "attribute") & table["group"].str.match(r"c\d+$")]
        rows = rows[(rows["prevalence_in"] >= MIN_SHARE) & (rows["p_adjusted"] < ALPHA)
                    & (rows["odds_ratio"] >= MIN_ODDS)].assign(n_total=n_total)  # fmt: skip
        if rows.empty:
            continue
        rows = rows.assign(overall=[_overall(r) for r in rows.itertuples()])
        lift = rows["prevalence_in"] / rows["overall"]
        rows = rows.assign(strength=rows["prevalence_in"] * np.log2(lift))
        rows = rows.sort_values("strength", ascending=False).drop_duplicates("group")
        for r in rows.itertuples():
            name = s.names[m].get(r.group, r.group)
            column, value = r.finding.split("=", 1)
            out.append(Lead(
                "cluster_attribute", m, f"{m} cluster {name!r} is {r.prevalence_in:.0%} {value}",
                f"{r.prevalence_in:.0%} of its {r.size} images have {column} = {value}, against "
                f"{r.overall:.0%} of the sample (odds ratio {r.odds_ratio:.1f}, BH-adjusted p "
                f"{r.p_adjusted:.1e}): the model separates them by {column}",
                f"{m}'s map: click {name!r} in the cluster_label_{m} count plot",
                f"results/analysis/clusters/{m}/enrichment.parquet: group={r.group}, "
                f"finding={r.finding}",
                float(r.strength), s.representatives(m, r.group),
            ))  # fmt: skip
    return out


def cluster_finding_leads(s: Study) -> list[Lead]:
    out = []
    for m, table in s.enrichment.items():
        rows = table[(table["kind"] == "finding") & table["group"].str.match(r"c\d+$")]
        rows = rows[(rows["p_adjusted"] < ALPHA) & (rows["odds_ratio"] >= MIN_ODDS)
                    & (rows["positives_in"] >= MIN_POSITIVES)]  # fmt: skip
        for r in rows.itertuples():
            name = s.names[m].get(r.group, r.group)
            out.append(Lead(
                "cluster_finding", m, f"{r.finding} gathers in {m} cluster {name!r}",
                f"{r.prevalence_in:.0%} positive inside ({r.positives_in} of the "
                f"{round(r.positives_in / r.prevalence_in)} labelled of its {r.size} images) "
                f"against {r.prevalence_out:.0%} outside (odds ratio {r.odds_ratio:.1f}, "
                f"BH-adjusted p {r.p_adjusted:.1e})",
                f"{m}'s map: click {name!r} in the cluster_label_{m} count plot, then "
                f"{r.finding} in the findings plot",
                f"results/analysis/clusters/{m}/enrichment.parquet: group={r.group}, "
                f"finding={r.finding}",
                float(np.log2(r.odds_ratio)), s.representatives(m, r.group),
            ))  # fmt: skip
    return out


def gap_leads(s: Study) -> list[Lead]:
    out = []
    ci = s.subgroups.set_index(["finding", "model", "attribute", "group"])
    # a gap means something only where the finding's pooled probe works (its CI above chance,
    # as the audit asks before it flags): with shuffled labels, chance gaps would be leads
    works = s.confounding[s.confounding["pooled_ci_low"] > 0.5][["finding", "model"]]
    gaps = s.gaps[s.gaps["separated"].astype(bool)].merge(works, on=["finding", "model"])
    for r in gaps.itertuples():
        best = ci.loc[(r.finding, r.model, r.attribute, r.best_group)]
        worst = ci.loc[(r.finding, r.model, r.attribute, r.worst_group)]
        groups = subgroup_frame(s.manifest, s.attributes)
        in_worst = s.manifest.index[(groups[r.attribute] == r.worst_group).fillna(False)]
        images = _mapped(s.reduced[r.model], in_worst)
        out.append(Lead(
            "subgroup_gap", r.model,
            f"{r.finding} on {r.model} works less well for {r.attribute} = {r.worst_group}",
            f"AUROC {r.worst_auroc:.2f} ({_ci(worst.ci_low, worst.ci_high)}) for "
            f"{r.worst_group} against {r.best_auroc:.2f} ({_ci(best.ci_low, best.ci_high)}) "
            f"for {r.best_group}: the CIs are apart",
            f"{r.model}'s map coloured by {r.finding}; filter {r.attribute} = {r.worst_group}",
            f"results/analysis/shortcuts/gaps.parquet and subgroups.parquet: "
            f"finding={r.finding}, model={r.model}, attribute={r.attribute}",
            float(r.gap), images,
        ))  # fmt: skip
    return out


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
            f"{r.finding} ({r.prevalence_in:.0%} inside, odds ratio {r.odds_ratio:.1f})"
            for r in top.head(3).itertuples()) if len(top) else ""  # fmt: skip
        cut = float(red["outlier"].quantile(s.outlier_quantile))
        top_images = region.sort_values("outlier", ascending=False)["image_id"].head(IMAGES)
        out.append(Lead(
            "outliers", m, f"{len(region)} outlier images on {m}'s map",
            f"the top {1 - s.outlier_quantile:.0%} of the outlier score (mean cosine distance to "
            f"the k neighbours): {ratio:.1f}x the rest's mean{made_of}; check them for "
            f"inverted, rotated, cropped or mislabelled films",
            f"{m}'s map: brush outlier_{m} above {cut:.3f}",
            f"results/analysis/clusters/{m}/enrichment.parquet: group=outliers; "
            f"results/reduce/{m}/reduced.parquet: outlier",
            ratio - 1, top_images.tolist(),
        ))  # fmt: skip
    return out


def disagreement_leads(s: Study) -> list[Lead]:
    d = s.disagreement
    if d is None or d.empty:
        return []
    worst = d.sort_values("agreement").head(IMAGES)
    mean = float(worst["agreement"].mean())
    return [Lead(
        "disagreement", "all", f"{len(worst)} images the models place most differently",
        f"their neighbourhoods overlap {mean:.0%} on average between models, against "
        f"{float(d['agreement'].mean()):.0%} over the {len(d)} listed images",
        f"any map: brush agreement below {float(worst['agreement'].max()):.2f}",
        "results/analysis/disagreement/images.parquet: agreement",
        1 - mean, worst["image_id"].tolist(),
    )]  # fmt: skip


def fragile_leads(s: Study) -> list[Lead]:
    t = s.label_noise
    if t is None or t.empty or "status" in t and (t["status"] != "scored").all():
        return []
    out = []
    for (m, finding), sub in t[t["status"] == "scored"].groupby(["model", "finding"]):
        sub = sub.set_index("fraction")
        if 0.0 not in sub.index or 0.1 not in sub.index:
            continue
        drop = float(sub.at[0.0, "probe_auroc"] - sub.at[0.1, "probe_auroc"])
        if drop < FRAGILE_DROP:
            continue
        out.append(Lead(
            "fragile", m, f"{finding} on {m} is fragile under label noise",
            f"10% of its labels flipped at random take the probe AUROC from "
            f"{sub.at[0.0, 'probe_auroc']:.2f} to {sub.at[0.1, 'probe_auroc']:.2f}: a few "
            f"percent of label errors would change the conclusion; audit its labels first",
            f"{m}'s map coloured by {finding}",
            f"results/analysis/label_noise/label_noise.parquet: model={m}, finding={finding}",
            drop, [],
        ))  # fmt: skip
    return out


COLLECTORS = {"shortcut": shortcut_leads, "cluster_attribute": cluster_attribute_leads,
              "cluster_finding": cluster_finding_leads, "subgroup_gap": gap_leads,
              "outliers": outlier_leads, "disagreement": disagreement_leads,
              "fragile": fragile_leads}  # fmt: skip


def rank_leads(leads: list[Lead]) -> list[Lead]:
    """The ranking rule (module docstring): round robin over KINDS, strongest first."""
    by_kind = {k: sorted((x for x in leads if x.kind == k), key=lambda x: -x.strength)
               for k in KINDS}  # fmt: skip
    ranked = []
    for i in range(max((len(v) for v in by_kind.values()), default=0)):
        ranked += [v[i] for v in by_kind.values() if i < len(v)]
    return ranked


def find_leads(s: Study) -> list[Lead]:
    return rank_leads([lead for kind in KINDS for lead in COLLECTORS[kind](s)])


def leads_table(leads: list[Lead]) -> pd.DataFrame:
    rows = [{"rank": i + 1, **vars(x), "images": list(x.images)} for i, x in enumerate(leads)]
    return pd.DataFrame(rows, columns=["rank", "kind", "model", "title", "evidence", "where",
                                       "source", "strength", "images"])  # fmt: skip


def top_leads_text(path: str, n: int = 5) -> str:
    """The first `n` leads of a leads table, one line each (the console after a run)."""
    table = pd.read_parquet(path, columns=["rank", "title", "evidence"]).head(n)
    return "\n".join(f"  {r.rank}. {r.title}: {r.evidence}" for r in table.itertuples())
