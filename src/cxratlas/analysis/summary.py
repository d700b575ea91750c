"""The study's summary, what a reader sees first: one paragraph per model, the ranked leads
(`leads.py`) with example images and where to find them in the atlas, and the checks (an
unrepresentative sample, steps skipped for lack of data, quality below its target).

Written as `summary.md` (with its thumbnail strips beside it) and `summary.rst`, which the
report's landing page includes (raw HTML, images inline, so the report stays one file). Every
number comes from a table under `results/analysis/`; nothing here recomputes an analysis.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxratlas.analysis.leads import TOP_LEADS, Lead, Study, find_leads
from cxratlas.analysis.representativeness import imbalance_line
from cxratlas.io import read_cluster_names, read_thumbnails


@dataclass(frozen=True)
class SummaryInputs:
    """Where the workflow wrote each table (the summary rule's inputs)."""

    models: list[str]
    confounding: str
    gaps: str
    subgroups: str
    attributes: str
    probes: str
    balance: str
    compare_models: str
    manifest: str
    enrichment: dict[str, str]
    groups: dict[str, str]
    stability: dict[str, str]
    reduced: dict[str, str]
    maps: dict[str, str]
    thumbnails: list[str]
    disagreement: str | None = None
    label_noise: str | None = None
    outlier_quantile: float = 0.95
    max_noise: float = 0.5


def load_study(i: SummaryInputs) -> Study:
    from cxratlas.io import read_manifest

    manifest, columns = read_manifest(i.manifest)
    return Study(
        models=i.models,
        confounding=pd.read_csv(i.confounding, sep="\t", keep_default_na=True),
        gaps=pd.read_parquet(i.gaps), subgroups=pd.read_parquet(i.subgroups),
        enrichment={m: pd.read_parquet(p) for m, p in i.enrichment.items()},
        names={m: read_cluster_names(p) for m, p in i.groups.items()},
        reduced={m: pd.read_parquet(p, columns=["image_id", "cluster", "outlier", "pagerank"])
                 for m, p in i.reduced.items()},
        manifest=manifest.set_index("image_id"),
        disagreement=pd.read_parquet(i.disagreement) if i.disagreement else None,
        label_noise=pd.read_parquet(i.label_noise) if i.label_noise else None,
        outlier_quantile=i.outlier_quantile, attributes=columns.attributes,
    )  # fmt: skip


def model_paragraph(m: str, i: SummaryInputs, s: Study) -> str:
    """What model m encodes besides disease, its shortcut flags, largest gap, noise, trust."""
    attrs = pd.read_parquet(i.attributes)
    attrs = attrs[(attrs["model"] == m) & (attrs["metric"] != "mae_years")]
    attrs = attrs.sort_values("value", ascending=False).head(4)
    encodes = ", ".join(f"{r.attribute} {r.value:.2f} ({r.ci_low:.2f}-{r.ci_high:.2f})"
                        for r in attrs.itertuples()) or "no attribute could be scored"  # fmt: skip
    flags = s.confounding[(s.confounding["model"] == m) & s.confounding["flagged"].astype(bool)]
    flagged = ", ".join(flags["finding"]) or "none"
    gaps = s.gaps[s.gaps["model"] == m].sort_values("gap", ascending=False)
    gap = "no subgroup could be scored"
    if len(gaps):
        g = gaps.iloc[0]
        apart = "CIs apart" if g["separated"] else "CIs overlap"
        gap = (f"{g['finding']} across {g['attribute']}: {g['best_group']} {g['best_auroc']:.2f} "
               f"against {g['worst_group']} {g['worst_auroc']:.2f} ({apart})")  # fmt: skip
    stab = pd.read_parquet(i.stability[m])
    noise = float(stab.loc[stab["configured"], "noise_share"].iloc[0])
    trust = pd.read_parquet(i.compare_models).set_index("model")["trustworthiness"].get(m)
    trust_text = f"{trust:.3f}" if trust is not None else "not measured"
    return (f"**{m}** encodes besides disease (attribute AUROC, 95% CI): {encodes}. Possible "
            f"shortcuts: {flagged}. Largest subgroup gap: {gap}. Noise share {noise:.0%} of "
            f"images; map trustworthiness {trust_text}.")  # fmt: skip


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
    from cxratlas.analysis.enrichment import contact_sheet

    pngs = [thumbnails.get(x) for x in lead.images]
    pngs = [p for p in pngs if p is not None]
    return contact_sheet({"": pngs}, thumb=80) if pngs else None


@dataclass
class Summary:
    paragraphs: list[str]
    leads: list[Lead]
    strips: list[bytes | None]
    checks: list[str]
    maps: dict[str, str]


def build_summary(i: SummaryInputs) -> Summary:
    s = load_study(i)
    leads = find_leads(s)
    wanted = list(dict.fromkeys(x for lead in leads[:TOP_LEADS] for x in lead.images))
    thumbs = read_thumbnails(i.thumbnails, wanted)
    return Summary([model_paragraph(m, i, s) for m in i.models], leads,
                   [strip(x, thumbs) for x in leads[:TOP_LEADS]], checks(i), i.maps)  # fmt: skip


def write_markdown(summary: Summary, path: str, strips_dir: str) -> None:
    from cxratlas.io import atomic_path

    lines = ["# What this study found", ""]
    lines += [*[p + "\n" for p in summary.paragraphs]]
    lines += [f"## Leads: what to look at next (top {TOP_LEADS} of {len(summary.leads)})", ""]
    folder = Path(strips_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for rank, (lead, png) in enumerate(zip(summary.leads, summary.strips, strict=False), 1):
        lines += [f"{rank}. **{lead.title}** ({lead.kind}). {lead.evidence}.",
                  f"   In the atlas: {lead.where}. From: `{lead.source}`."]  # fmt: skip
        if png:
            (folder / f"lead-{rank}.png").write_bytes(png)
            lines.append(f"   ![examples]({folder.name}/lead-{rank}.png)")
        lines.append("")
    lines += ["## Checks", ""] + [f"- {c}" for c in summary.checks or ["nothing to report"]]
    lines += ["", "## Maps", ""] + [f"- {m}: `{p}`" for m, p in summary.maps.items()]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _img(png: bytes, width: int) -> str:
    # wrapped: docutils refuses lines past 10,000 characters, and a data URL's base64 may
    # hold line breaks (the fetch standard's forgiving-base64 drops ASCII whitespace)
    data = base64.encodebytes(png).decode().strip()
    return f'<img src="data:image/png;base64,{data}" style="max-width:{width}px;width:100%">'


def write_landing(summary: Summary, path: str) -> None:
    """The report's landing page: raw HTML inside reStructuredText (`report/workflow.rst`
    includes it), the strips and maps inline."""
    from cxratlas.io import atomic_path

    e = html.escape
    parts = ["<h2>What this study found</h2>"]
    parts += [f"<p>{e(p).replace('**', '')}</p>" for p in summary.paragraphs]
    parts.append(f"<h3>Leads: what to look at next (top {TOP_LEADS} of "
                 f"{len(summary.leads)})</h3><ol>")  # fmt: skip
    for lead, png in zip(summary.leads, summary.strips, strict=False):
        parts.append(f"<li><b>{e(lead.title)}</b> <i>({e(lead.kind)})</i><br>{e(lead.evidence)}"
                     f"<br>In the atlas: {e(lead.where)}<br><small>From: {e(lead.source)}"
                     f"</small>{'<br>' + _img(png, 700) if png else ''}</li>")  # fmt: skip
    parts.append("</ol><h3>Checks</h3><ul>")
    parts += [f"<li>{e(c)}</li>" for c in summary.checks or ["nothing to report"]]
    parts.append("</ul><h3>Maps</h3>")
    for m, p in summary.maps.items():
        parts.append(f"<p><b>{e(m)}</b><br>{_img(Path(p).read_bytes(), 800)}</p>")
    body = "\n".join(parts)
    with atomic_path(path) as tmp:
        tmp.write_text(".. raw:: html\n\n" + "".join(f"   {line}\n" for line in body.split("\n")))
