"""The bias and shortcut audit: what each model encodes besides disease, how its findings hold
up within subgroups and sites, and which findings look like shortcuts.

Three tables per run (and figures, `shortcut_plots`):
- attributes: each model's embeddings predicting sex, age, view, vendor, dataset, site, year and
  every kept attribute (`attribute_probes`);
- subgroups (+ gaps): each finding probe's AUROC within each subgroup (`subgroup_performance`);
- confounding: per finding and model, (a) the pooled AUROC, (b) the within-site AUROC, (c) the
  metadata-only AUROC, flagged when (b) falls `drop_margin` below (a) or (c) comes within
  `baseline_margin` of (a). A flag is an alert on the console and in the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.analysis.attribute_probes import attribute_probes
from cxratlas.analysis.probes import (
    SCORED,
    ProbeSettings,
    common_embeddings,
    finding_labels,
    patient_groups,
    skipped_rows,
    too_few,
)
from cxratlas.analysis.subgroup_performance import (
    SUBGROUP_COLUMNS,
    finding_scores,
    largest_gaps,
    metadata_auroc,
    subgroup_auroc,
    within_site_auroc,
)
from cxratlas.logs import alert
from cxratlas.subgroups import resolve_site, subgroup_frame

log = logging.getLogger(__name__)

CONFOUNDING_COLUMNS = ["finding", "model", "n", "positives", "pooled_auroc", "pooled_ci_low",
                       "pooled_ci_high", "site", "within_site_auroc", "within_site_scored_auroc",
                       "sites", "metadata_auroc", "metadata_ci_low", "flagged",
                       "reason", "status"]  # fmt: skip


@dataclass(frozen=True)
class ShortcutSettings:
    """`analysis.shortcuts`, built once."""

    site: str | None = "auto"  # auto | a subgroup column | null
    min_group: int = 10  # positives and negatives a subgroup or site needs to be scored
    drop_margin: float = 0.05  # within-site AUROC this far below the pooled one: flagged
    baseline_margin: float = 0.05  # metadata-only AUROC this close to the pooled one: flagged

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> ShortcutSettings:
        return cls(**{k: section[k] for k in cls.__dataclass_fields__})


@dataclass
class Audit:
    attributes: pd.DataFrame
    subgroups: pd.DataFrame
    gaps: pd.DataFrame
    confounding: pd.DataFrame
    site: str | None
    notes: list[str] = field(default_factory=list)


def run_audit(
    embeddings: dict[str, str], manifest_path: str, findings: list[str] | None,
    probes: ProbeSettings, settings: ShortcutSettings,
) -> Audit:  # fmt: skip
    from cxratlas.io import read_manifest

    manifest, columns = read_manifest(manifest_path)
    manifest = manifest.set_index("image_id")
    loaded, common = common_embeddings(embeddings)
    groups = subgroup_frame(manifest.loc[common], columns.attributes)
    patients = patient_groups(manifest, common)
    site, why = resolve_site(groups, settings.site)
    log.info("site column: %s", why)
    age = manifest.loc[common, "age"] if "age" in manifest else None
    attrs = attribute_probes(loaded, groups, patients, probes, age)
    findings = list(columns.findings) if findings is None else findings
    missing = [f for f in findings if f not in manifest.columns]
    if missing:
        raise KeyError(f"analysis.probes.findings {missing} are not manifest columns")
    rows, confounding = [], []
    for finding in findings:
        labels = finding_labels(manifest, finding, probes.labels).reindex(common).dropna()
        pos = int(labels.sum())
        short = too_few(pos, len(labels), probes.min_positives)
        if short:  # a row where its audit would be, so the table says why it is missing
            confounding += skipped_rows(finding, loaded, len(labels), pos, short, flagged=False)
            continue
        base = metadata_auroc(labels, groups.drop(columns=[finding], errors="ignore"),
                              patients, probes)  # fmt: skip
        for m, (ids, X, _) in loaded.items():
            Xm = X[pd.Index(ids).get_indexer(labels.index)]
            f = finding_scores(finding, m, Xm, labels, patients, probes)
            if f is None:
                confounding += skipped_rows(finding, [m], len(labels), pos, flagged=False,
                                            reason="too few patients with each class for "
                                            "two patient-level folds")  # fmt: skip
                continue
            rows += subgroup_auroc(f, groups, settings.min_group, probes)
            within = (within_site_auroc(f, groups[site], settings.min_group, probes)
                      if site else (np.nan, np.nan, 0))  # fmt: skip
            confounding.append(_flag(f, f.pooled_ci(probes), (site, *within), base,
                                     settings))  # fmt: skip
    subgroups = pd.DataFrame(rows, columns=SUBGROUP_COLUMNS)
    table = pd.DataFrame(confounding, columns=CONFOUNDING_COLUMNS)
    for r in table[table["flagged"]].itertuples():
        alert(log, "possible shortcut: %s on %s: %s", r.finding, r.model, r.reason)
    notes = [f"site column: {why}"]
    return Audit(attrs, subgroups, largest_gaps(subgroups), table, site, notes)


def _flag(f, pooled_ci, within_site, base, s: ShortcutSettings) -> dict:
    """A finding is only audited when its pooled probe finds something (CI above chance);
    then a within-site drop (of the retrained probes and of the pooled probe ranked within
    sites, so a smaller training set alone does not flag), or metadata that alone reach its
    AUROC (their CI above chance), flags it."""
    pooled = f.pooled
    site, within, scored, n_sites = within_site
    reasons = []
    if pooled_ci[0] <= 0.5:
        note = f"pooled AUROC {pooled:.2f} is not above chance (CI from {pooled_ci[0]:.2f})"
    else:
        note = ""
        if not np.isnan(within) and pooled - max(within, scored) >= s.drop_margin:
            reasons.append(f"within-{site} AUROC {within:.2f} is {pooled - within:.2f} below "
                           f"the pooled {pooled:.2f}")  # fmt: skip
        if base[1] > 0.5 and base[0] >= pooled - s.baseline_margin:
            reasons.append(f"the metadata alone reach AUROC {base[0]:.2f} (pooled {pooled:.2f})")
    return {
        "finding": f.finding, "model": f.model, "n": len(f.y), "positives": int(f.y.sum()),
        "pooled_auroc": pooled, "pooled_ci_low": pooled_ci[0], "pooled_ci_high": pooled_ci[1],
        "site": site or "", "within_site_auroc": within, "within_site_scored_auroc": scored,
        "sites": n_sites,
        "metadata_auroc": base[0], "metadata_ci_low": base[1], "flagged": bool(reasons),
        "reason": "; ".join(reasons) or note, "status": SCORED,
    }  # fmt: skip
