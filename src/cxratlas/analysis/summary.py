"""The study's summary, what a reader sees first, in this order:

1. how the models compare: a model x finding table of probe AUROCs with 95% CIs (the best model
   of each finding marked, and the differences a paired patient-level bootstrap separates from
   0), a model x model table of agreement with intervals, and a sentence per model on what it
   sees that the others do not;
2. the models one by one (what each encodes besides disease, its shortcut flags, a subgroup gap
   whose CIs separate, its noise share and trustworthiness);
3. the ranked leads (`leads.py`) with captioned example images and where to find them;
4. the checks (an unrepresentative sample, steps skipped for lack of data, quality);
5. the maps, and the terms the summary uses, each explained once.

Built once as blocks (`Block`), written as `summary.md` (its strips beside it) and as
`summary.rst`, which the report's landing page includes (raw HTML, images inline, so the report
stays one file). Every number comes from a table under `results/analysis/`; nothing here
recomputes an analysis.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxratlas.analysis.compare import HELD_TOGETHER
from cxratlas.analysis.leads import TOP_LEADS, Lead, Study, find_leads, join_names, separated_gaps
from cxratlas.analysis.representativeness import imbalance_line
from cxratlas.io import read_cluster_names, read_thumbnails

KIND_NAMES = {
    "shortcut": "possible shortcut",
    "cluster_attribute": "cluster of one attribute",
    "cluster_finding": "finding gathers",
    "subgroup_gap": "subgroup gap",
    "outliers": "outlier region",
    "disagreement": "models disagree",
    "fragile": "fragile under label noise",
    "error_slice": "where a classifier fails",
}
GLOSSARY = {
    "AUROC": "area under the ROC curve: the chance that a random positive image scores above a "
             "random negative one (0.5 is chance, 1 is perfect).",
    "probe": "a logistic regression trained on a model's frozen embeddings to predict one "
             "finding or attribute, scored out of fold on patient-level folds (no patient on "
             "both sides of a split).",
    "95% CI": "95% confidence interval from a patient bootstrap: patients (all their images "
              "together) drawn with replacement, the number recomputed on each draw.",
    "paired bootstrap difference": "two models' probes scored on the same patient draws: the "
                                   "spread of their difference, narrower than two separate CIs "
                                   "suggest when both models err on the same hard images.",
    "BH-adjusted p": "a p-value corrected by Benjamini-Hochberg for the number of tests made at "
                     "once (controls the share of false discoveries among the claims).",
    "kNN overlap": "per image, the Jaccard index of its k nearest neighbours in two models (1: "
                   "the same neighbours), averaged over the sample; 95% interval by patient "
                   "bootstrap.",
    "CKA": "linear centred kernel alignment: how alike the geometry of two embeddings is "
           "(1: the same up to rotation and scale); interval by a delete-a-group jackknife over "
           "20 groups of patients.",
    "ARI": "adjusted Rand index of two models' clusters (1: the same clusters, 0: no more alike "
           "than chance); interval by patient bootstrap.",
    "trustworthiness": "how well a 2-D map keeps each image's nearest neighbours (1: every "
                       "neighbour on the map is a neighbour in the embedding).",
    "noise share": "the share of images HDBSCAN leaves out of every cluster.",
    "odds ratio": "the odds of a value inside a cluster over its odds outside (0.5 added to each "
                  "cell of the 2x2 table); where a cell is zero the shares are given instead.",
    "×3.1 (in a cluster's name)": "the finding is 3.1 times as common inside the cluster as "
                                  "outside it; 'only here' where it is absent outside.",
    "metadata alone": "the AUROC of a probe that sees only the site, view, vendor, sex and age "
                      "columns, not the image: a finding it predicts nearly as well as the "
                      "embeddings may be a shortcut.",
    "within-site AUROC": "the probe's AUROC with positives and negatives compared only within "
                         "the same site (or vendor): what is left once the site cannot help.",
    "SMD": "standardised mean difference between the sample and the rows left out; |SMD| above "
           "0.1 is the usual mark of imbalance.",
    "kNN share (a subgroup)": "the share of a subgroup's images' nearest neighbours that are in "
                              "the subgroup too, against random sets of the same size: high when "
                              "the model's space gathers it.",
    "outlier score": "an image's mean cosine distance to its k nearest neighbours.",
    "label noise, original vs flipped": "a probe trained on labels with some flipped is scored "
                                        "against the original labels (what the errors cost) and "
                                        "against the flipped ones (what a user with those errors "
                                        "measures, which falls even for an unharmed probe).",
}  # fmt: skip


@dataclass(frozen=True)
class SummaryInputs:
    """Where the workflow wrote each table (the summary rule's inputs); the per-model files
    are keyed by the model each records (`io.by_model`)."""

    models: list[str]
    confounding: str
    gaps: str
    subgroups: str
    attributes: str
    probes: str
    differences: str
    balance: str
    compare_pairs: str
    compare_models: str
    compare_clusters: str
    manifest: str
    enrichment: dict[str, str]
    groups: dict[str, str]
    stability: dict[str, str]
    reduced: dict[str, str]
    maps: dict[str, str]
    thumbnails: list[str]
    disagreement: str | None = None
    label_noise: str | None = None
    subgroup_placements: list[str] = field(default_factory=list)  # the config's `subgroups`
    subgroup_performances: list[str] = field(default_factory=list)
    outlier_quantile: float = 0.95
    max_noise: float = 0.5


def load_study(i: SummaryInputs) -> Study:
    from cxratlas.io import read_manifest

    manifest, columns = read_manifest(i.manifest)
    per_model = pd.read_parquet(i.compare_models)
    return Study(
        models=i.models,
        confounding=pd.read_csv(i.confounding, sep="\t", keep_default_na=True),
        gaps=pd.read_parquet(i.gaps), subgroups=pd.read_parquet(i.subgroups),
        enrichment={m: pd.read_parquet(i.enrichment[m]) for m in i.models},
        names={m: read_cluster_names(i.groups[m]) for m in i.models},
        labels={m: read_cluster_names(i.groups[m], "label") for m in i.models},
        reduced={m: pd.read_parquet(i.reduced[m], columns=["image_id", "cluster", "outlier",
                                                           "pagerank"]) for m in i.models},
        manifest=manifest.set_index("image_id"),
        disagreement=pd.read_parquet(i.disagreement) if i.disagreement else None,
        label_noise=pd.read_parquet(i.label_noise) if i.label_noise else None,
        outlier_quantile=i.outlier_quantile, attributes=columns.attributes,
        mean_agreement=float(per_model["mean_agreement"].mean()) if len(i.models) > 1 else None,
    )  # fmt: skip


# blocks: what the summary says, written once, rendered as Markdown and as HTML
@dataclass
class Block:
    kind: str  # h2 | h3 | p | table | list | leads | image
    text: str = ""
    rows: list = field(default_factory=list)  # table: header first; list: items
    anchor: str = ""
    leads: list = field(default_factory=list)  # (Lead, strip PNG or None)
    png: bytes | None = None


def _interval(value, low, high) -> str:
    return f"{value:.2f} ({low:.2f}-{high:.2f})" if np.isfinite(value) else "-"


def probe_table(probes: pd.DataFrame, differences: pd.DataFrame, models: list[str]) -> list:
    """Rows of the model x finding table: AUROC (95% CI); the best of a finding in bold where
    its CI is above chance (a best among probes at chance is no claim), with a dagger where the
    paired bootstrap separates it from every other model."""
    scored = probes[probes["status"] == "scored"]
    rows = [["finding", *models]]
    for finding, sub in scored.groupby("finding", sort=False):
        sub = sub.set_index("model")
        best = sub["auroc"].idxmax()
        beaten = differences[(differences["finding"] == finding) & differences["separated"]
                             & (differences["model_a"] == best)]["model_b"]  # fmt: skip
        cells = []
        for m in models:
            if m not in sub.index:
                cells.append("-")
                continue
            text = _interval(sub.at[m, "auroc"], sub.at[m, "ci_low"], sub.at[m, "ci_high"])
            if m == best and len(models) > 1 and sub.at[m, "ci_low"] > 0.5:
                dagger = " †" if set(beaten) >= set(models) - {m} else ""
                text = f"**{text}**{dagger}"
            cells.append(text)
        rows.append([finding, *cells])
    return rows


def difference_lines(differences: pd.DataFrame) -> list[str]:
    return [f"{r.finding}: {r.model_a} {r.auroc_a:.2f} over {r.model_b} {r.auroc_b:.2f}, "
            f"difference {r.difference:.3f} (95% CI {r.ci_low:.3f} to {r.ci_high:.3f}; "
            f"BH-adjusted p {r.p_adjusted:.3f})"
            for r in differences[differences["separated"]].itertuples()]  # fmt: skip


def agreement_table(pairs: pd.DataFrame) -> list:
    rows = [["models", "kNN overlap", "CKA", "cluster ARI"]]
    for r in pairs.itertuples():
        rows.append([f"{r.model_a} / {r.model_b}", _interval(r.jaccard_k, r.jaccard_low,
                                                             r.jaccard_high),
                     _interval(r.cka, r.cka_low, r.cka_high), _interval(r.ari, r.ari_low,
                                                                       r.ari_high)])  # fmt: skip
    return rows


def what_only_it_sees(m: str, i: SummaryInputs, s: Study) -> str:
    """One sentence: the findings model m classifies separably better than others, the
    clusters no other model holds together, the attributes it encodes more strongly."""
    diffs = pd.read_parquet(i.differences)
    better = diffs[diffs["separated"] & (diffs["model_a"] == m)]
    parts = [f"classifies {r.finding} better than {r.model_b} ({r.auroc_a:.2f} against "
             f"{r.auroc_b:.2f}, difference 95% CI {r.ci_low:.2f} to {r.ci_high:.2f})"
             for r in better.itertuples()]  # fmt: skip
    clusters = pd.read_parquet(i.compare_clusters)
    own = (
        clusters[clusters["model"] == m]
        .groupby("cluster")
        .agg(size=("size", "first"), best=("jaccard", "max"))
    )
    # a cluster of most of the images is the map's background, not something a model sees
    apart = own[(own["best"] < HELD_TOGETHER) & (own["size"] <= 0.5 * own["size"].sum())]
    for c, r in apart.iterrows():
        name = s.names[m].get(f"c{c}", f"c{c}")
        parts.append(
            f"holds {name!r} ({int(r['size'])} images) together, which no other model "
            f"keeps in one cluster (best match elsewhere: Jaccard {r['best']:.2f})"
        )
    parts += _stronger_attributes(m, pd.read_parquet(i.attributes))
    if not parts:
        return (f"**{m}** sees nothing here that the others miss: no finding it classifies "
                f"separably better, no cluster the others split, no attribute it encodes with "
                f"a CI above theirs.")  # fmt: skip
    return f"**{m}** {'; '.join(parts)}."


def _stronger_attributes(m: str, attrs: pd.DataFrame) -> list[str]:
    """Attributes whose AUROC CI for m lies above every other model's CI."""
    attrs = attrs[attrs["metric"] != "mae_years"]
    out = []
    for attribute, sub in attrs.groupby("attribute", sort=False):
        sub = sub.set_index("model")
        if m not in sub.index or len(sub) < 2:
            continue
        others = sub.drop(m)
        if sub.at[m, "ci_low"] > others["ci_high"].max():
            out.append(f"encodes {attribute} more strongly ({sub.at[m, 'value']:.2f}, 95% CI "
                       f"{sub.at[m, 'ci_low']:.2f}-{sub.at[m, 'ci_high']:.2f}, against at most "
                       f"{others['ci_high'].max():.2f} for the others' CIs)")  # fmt: skip
    return out


def comparison_blocks(i: SummaryInputs, s: Study) -> list[Block]:
    probes, diffs = pd.read_parquet(i.probes), pd.read_parquet(i.differences)
    out = [Block("h2", "How the models compare", anchor="compare")]
    if len(i.models) < 2:
        return out + [Block("p", "One model: there is nothing to compare it with.")]
    out.append(
        Block(
            "p",
            "How well each model's embeddings classify each finding: [probe]"
            "(#terms) [AUROC](#terms) with its [95% CI](#terms). The best model "
            "of each finding is in bold where its CI is above chance; † marks a best "
            "model that the [paired "
            "bootstrap difference](#terms) separates from every other model.",
        )
    )
    out.append(Block("table", rows=probe_table(probes, diffs, i.models)))
    skipped = probes[probes["status"] == "skipped"].drop_duplicates("finding")
    if len(skipped):
        out.append(Block("p", "Not scored (too few positives or negatives): "
                              + ", ".join(skipped["finding"]) + "."))  # fmt: skip
    lines = difference_lines(diffs)
    out.append(
        Block(
            "p",
            "Differences the paired patient bootstrap separates from 0 "
            "([BH-adjusted p](#terms) < 0.05, the better probe above chance):"
            if lines
            else "No difference between two models' probes is separated "
            "from 0 (paired patient bootstrap, [BH-adjusted p](#terms) < 0.05): where "
            "the AUROCs above differ, this sample cannot tell the models apart.",
        )
    )
    out += [Block("list", rows=lines)] if lines else []
    out.append(
        Block(
            "p",
            "How alike the models see the sample, each with its 95% interval: "
            "[kNN overlap](#terms) (the same neighbours), [CKA](#terms) (the same "
            "geometry), cluster [ARI](#terms) (the same clusters); 1 is identical.",
        )
    )
    out.append(Block("table", rows=agreement_table(pd.read_parquet(i.compare_pairs))))
    out.append(Block("p", "What each model sees that the others do not:"))
    out.append(Block("list", rows=[what_only_it_sees(m, i, s) for m in i.models]))
    return out


def model_paragraph(m: str, i: SummaryInputs, s: Study) -> str:
    """What model m encodes besides disease, its shortcut flags, its largest subgroup gap whose
    CIs separate, noise, trust."""
    attrs = pd.read_parquet(i.attributes)
    attrs = attrs[(attrs["model"] == m) & (attrs["metric"] != "mae_years")]
    attrs = attrs.sort_values("value", ascending=False).head(4)
    encodes = ", ".join(f"{r.attribute} {r.value:.2f} ({r.ci_low:.2f}-{r.ci_high:.2f})"
                        for r in attrs.itertuples()) or "no attribute could be scored"  # fmt: skip
    flags = s.confounding[(s.confounding["model"] == m) & s.confounding["flagged"].astype(bool)]
    flagged = ", ".join(flags["finding"]) or "none"
    gaps = separated_gaps(s.gaps[s.gaps["model"] == m], s.confounding)
    gap = "none whose CIs separate"
    if len(gaps):
        g = gaps.iloc[0]
        gap = (f"{g['finding']} across {g['attribute']}: {g['best_group']} {g['best_auroc']:.2f} "
               f"against {g['worst_group']} {g['worst_auroc']:.2f} (CIs apart)")  # fmt: skip
    stab = pd.read_parquet(i.stability[m])
    noise = float(stab.loc[stab["configured"], "noise_share"].iloc[0])
    trust = pd.read_parquet(i.compare_models).set_index("model")["trustworthiness"].get(m)
    trust_text = f"{trust:.3f}" if trust is not None and np.isfinite(trust) else "not measured"
    return (f"**{m}** encodes besides disease (attribute [AUROC](#terms), 95% CI): {encodes}. "
            f"Possible shortcuts: {flagged}. Largest subgroup gap: {gap}. [Noise share]"
            f"(#terms) {noise:.0%} of images; map [trustworthiness](#terms) "
            f"{trust_text}.")  # fmt: skip


def checks(i: SummaryInputs) -> list[str]:
    """Warnings a reader must see beside the findings: imbalance, skipped steps, quality."""
    out = []
    balance = pd.read_parquet(i.balance)
    for r in balance[balance["imbalanced"]].itertuples():
        line = imbalance_line(r)
        out.append(f"{line[0].upper()}{line[1:]}; see results/analysis/sample/balance.tsv")
    skipped = [("probe", pd.read_parquet(i.probes)),
               ("shortcut audit", pd.read_csv(i.confounding, sep="\t"))]  # fmt: skip
    if i.label_noise:
        skipped.append(("label-noise step", pd.read_parquet(i.label_noise)))
    for what, table in skipped:
        rows = table[table.get("status", pd.Series(dtype=str)) == "skipped"]
        for r in rows.drop_duplicates(["finding", "reason"]).itertuples():
            finding = f" {r.finding}" if r.finding else ""
            out.append(f"Skipped {what}{finding}: {r.reason}")
    for m, path in i.stability.items():
        stab = pd.read_parquet(path)
        noise = float(stab.loc[stab["configured"], "noise_share"].iloc[0])
        if noise > i.max_noise:
            out.append(f"{m}: {noise:.0%} of images are noise, above analysis.clusters"
                       f".max_noise ({i.max_noise:.0%}): its clusters hold a minority")  # fmt: skip
    return out


def strip(lead: Lead, thumbnails: dict[str, bytes | None]) -> bytes | None:
    from cxratlas.analysis.strips import captioned_strip

    items = [(thumbnails[x], lead.captions.get(x, [])) for x in lead.images
             if thumbnails.get(x) is not None]  # fmt: skip
    return captioned_strip(items, lead.legend) if items else None


def subgroup_blocks(i: SummaryInputs) -> list[Block]:
    """The selections the user named (`subgroups`): where each sits, and where a classifier
    or probe scores it apart; nothing when the config names none."""
    from cxratlas.analysis.subgroup_report import subgroup_lines

    if not i.subgroup_placements:
        return []
    rows = subgroup_lines(i.subgroup_placements, i.subgroup_performances)
    return [Block("h2", "Your subgroups", anchor="subgroups"), Block("list", rows=rows)]


def build_summary(
    i: SummaryInputs, extra_leads: list[Lead] = (), extra_blocks: list[Block] = ()
) -> tuple[list[Block], list[Lead]]:
    """The summary's blocks, and every lead ranked (the summary shows the first TOP_LEADS);
    `extra_blocks` (the classifiers' audit) follow the user's subgroups."""
    s = load_study(i)
    leads = find_leads(s, list(extra_leads))
    wanted = list(dict.fromkeys(x for lead in leads[:TOP_LEADS] for x in lead.images))
    thumbs = read_thumbnails(i.thumbnails, wanted)
    n = len(s.reduced[i.models[0]])
    blocks = [Block("h2", "What this study found", anchor="top"),
              Block("p", f"{n} images, embedded by {len(i.models)} model(s): "
                         f"{join_names(i.models)}. Terms are explained at the end "
                         f"([Terms](#terms)).")]  # fmt: skip
    blocks += comparison_blocks(i, s)
    blocks.append(Block("h2", "The models one by one", anchor="models"))
    blocks += [Block("p", model_paragraph(m, i, s)) for m in i.models]
    blocks.append(Block("h2", f"Leads: what to look at next (top {min(TOP_LEADS, len(leads))} "
                              f"of {len(leads)})", anchor="leads"))  # fmt: skip
    blocks.append(Block("leads", leads=[(x, strip(x, thumbs)) for x in leads[:TOP_LEADS]]))
    blocks += subgroup_blocks(i)
    blocks += list(extra_blocks)
    blocks.append(Block("h2", "Checks", anchor="checks"))
    blocks.append(Block("list", rows=checks(i) or ["nothing to report"]))
    blocks.append(Block("h2", "Maps", anchor="maps"))
    for m in i.models:
        blocks.append(Block("image", m, png=Path(i.maps[m]).read_bytes(), anchor=f"map-{m}"))
    blocks.append(Block("h2", "Terms", anchor="terms"))
    blocks.append(Block("list", rows=[f"**{k}**: {v}" for k, v in GLOSSARY.items()]))
    return blocks, leads


# Markdown
def _md_table(rows: list) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return out + ["| " + " | ".join(r) + " |" for r in rows[1:]] + [""]


def write_markdown(blocks: list[Block], path: str, strips_dir: str) -> None:
    from cxratlas.io import atomic_path

    folder = Path(strips_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for b in blocks:
        if b.kind in ("h2", "h3"):
            top = b.anchor == "top"  # the page's title: Markdown's own top is its anchor
            lines += [f'<a id="{b.anchor}"></a>', ""] if b.anchor and not top else []
            lines += [("# " if top else "## ") + b.text, ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "table":
            lines += _md_table(b.rows)
        elif b.kind == "list":
            lines += [f"- {r}" for r in b.rows] + [""]
        elif b.kind == "image":
            name = f"map-{b.text}.png"
            (folder / name).write_bytes(b.png)
            lines += [f"**{b.text}**", "", f"![{b.text}'s map]({folder.name}/{name})", ""]
        elif b.kind == "leads":
            for rank, (lead, png) in enumerate(b.leads, 1):
                lines += [f"{rank}. **{lead.title}** ({KIND_NAMES.get(lead.kind, lead.kind)}). "
                          f"{lead.evidence}.",
                          f"   In the atlas: {lead.where}. From: `{lead.source}`."]  # fmt: skip
                if png:
                    (folder / f"lead-{rank}.png").write_bytes(png)
                    lines.append(f"   ![examples]({folder.name}/lead-{rank}.png)")
                lines.append("")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# HTML (the report's landing page)
def _inline(text: str) -> str:
    """Escaped text with **bold** and [links](#anchor) as HTML."""
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"\[([^\]]+)\]\((#[\w-]+)\)", r'<a href="\2">\1</a>', text)


def _img(png: bytes, width: int, alt: str) -> str:
    # wrapped: docutils refuses lines past 10,000 characters, and a data URL's base64 may
    # hold line breaks (the fetch standard's forgiving-base64 drops ASCII whitespace)
    data = base64.encodebytes(png).decode().strip()
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" '
            f'style="max-width:{width}px;width:100%">')  # fmt: skip


def _html_table(rows: list) -> str:
    head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                   for r in rows[1:])  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_lead(lead: Lead, png: bytes | None) -> str:
    kind = KIND_NAMES.get(lead.kind, lead.kind)
    image = "<br>" + _img(png, 900, f"examples of: {lead.title}") if png else ""
    return (f"<li><b>{_inline(lead.title)}</b> <i>({html.escape(kind)})</i><br>"
            f"{_inline(lead.evidence)}<br>In the atlas: {_inline(lead.where)}<br>"
            f"<small>From: {html.escape(lead.source)}</small>{image}</li>")  # fmt: skip


def write_landing(blocks: list[Block], path: str) -> None:
    """The report's landing page: raw HTML inside reStructuredText (`report/workflow.rst`
    includes it), the strips and maps inline."""
    from cxratlas.io import atomic_path

    parts = []
    for b in blocks:
        anchor = f' id="{b.anchor}"' if b.anchor else ""
        if b.kind in ("h2", "h3"):
            parts.append(f"<{b.kind}{anchor}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "table":
            parts.append(_html_table(b.rows))
        elif b.kind == "list":
            parts.append("<ul>" + "".join(f"<li>{_inline(r)}</li>" for r in b.rows) + "</ul>")
        elif b.kind == "image":
            parts.append(f"<p{anchor}><b>{html.escape(b.text)}</b><br>"
                         f"{_img(b.png, 900, b.text + ' map')}</p>")  # fmt: skip
        elif b.kind == "leads":
            parts.append("<ol>" + "".join(_html_lead(x, png) for x, png in b.leads) + "</ol>")
    body = "\n".join(parts)
    with atomic_path(path) as tmp:
        tmp.write_text(".. raw:: html\n\n" + "".join(f"   {line}\n" for line in body.split("\n")))
