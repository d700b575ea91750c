"""Error slices as leads (kind `error_slice`) for the summary's ranking.

One lead per recurrence (a slice found in several models' spaces is one finding): the slice of
it with the largest AUROC drop speaks for it. Strength: that drop (AUROC outside minus the
slice's AUROC, or its BNSP / BPSN for a one-class slice), on the same 0-1 scale as a subgroup
gap. Images: the slice's most typical errors (highest responsibility under the fit that placed
them), then its most typical other members.
"""

from __future__ import annotations

import pandas as pd

from cxratlas.analysis.leads import IMAGES  # example thumbnails per lead
from cxratlas.io import slice_column, slice_label
from cxratlas.slices.across import significant
from cxratlas.slices.search import ATTRIBUTE, MAP

KIND = "error_slice"
SLICES = "results/analysis/slices/slices.parquet"
METRIC_TEXT = {"auroc": "AUROC", "bnsp": "BNSP AUROC (its positives against all negatives "
               "outside it)", "bpsn": "BPSN AUROC (its negatives against all positives "
               "outside it)"}  # fmt: skip


def typical_images(members: pd.DataFrame, n: int = IMAGES) -> list[str]:
    """A slice's errors first, most typical first, then its other members."""
    rows = members.sort_values(["error", "typicality"], ascending=False)
    return rows["image_id"].head(n).tolist()


def error_slice_leads(slices: pd.DataFrame, members: pd.DataFrame) -> list:
    """The `analysis.leads.Lead`s of the flagged slices of `slices.parquet` and
    `members.parquet` (`across.combine`).
    Lead is imported here, not at the top, so `analysis.leads` may import this module."""
    from cxratlas.analysis.leads import Lead

    sig = slices[significant(slices)]
    key = ["classifier", "finding", "model", "slice"]
    by_slice = {k: g for k, g in members.groupby(key, sort=False)}
    out = []
    for (classifier, recurrence), group in sig.groupby(["classifier", "recurrence"], sort=False):
        r = group.loc[group["drop"].idxmax()]
        others = sorted(set(group["model"]) - {r["model"]})
        own = by_slice.get(tuple(r[key]), members.iloc[:0])
        images = typical_images(own)
        out.append(Lead(
            KIND, [r["model"], *others], _subject(r, others), _evidence(r),
            f"{r['model']}'s map: click {slice_label(r['finding'], r['slice'])!r} in the "
            f"{slice_column(r['classifier'], r['model'])} count plot",
            f"{SLICES}: classifier={r['classifier']}, finding={r['finding']}, "
            f"model={r['model']}, slice={r['slice']}",
            float(r["drop"]), images, _captions(own, images, r["finding"]),
            f"under each image: the call (FN false negative, FP false positive, ok), "
            f"{r['finding']} (+ positive, - negative), the classifier's score",
            key=(KIND, classifier, recurrence), short=f"{r['n_images']} images",
        ))  # fmt: skip
    return out


def _subject(r, others: list[str]) -> str:
    head = f"{r['classifier']} fails on {r['finding']} in {r['n_images']} images"
    if r["method"] == "attribute":  # the same images whichever model's map shows them
        return f"{head}: those with {r['slice'].replace('=', ' = ', 1)}"
    where = (
        f"a slice of {r['model']}'s space"
        if r["method"] == "mixture"
        else f"map cluster {r['cluster_name'] or r['slice']!r} of {r['model']}"
    )
    also = ", also found in the others' spaces" if others else ""
    return f"{head}: {where}{also}"


def _captions(members: pd.DataFrame, images: list[str], finding: str) -> dict[str, list[str]]:
    rows = members.drop_duplicates("image_id").set_index("image_id")
    out = {}
    for image in images:
        m = rows.loc[image]
        label = int(m["label"])
        call = ("FN" if label else "FP") if bool(m["error"]) else "ok"
        out[image] = [f"{call} · {finding} {'+' if label else '-'}", f"score {m['score']:.2f}"]
    return out


def _tested(found_on: str) -> str:
    """How the slice was tested, in words."""
    if found_on == MAP:
        return "a cluster of the map, which nothing chose for its errors"
    if found_on == ATTRIBUTE:
        return "a value of a manifest column, each value tested, none chosen for its errors"
    if found_on == "both halves":
        return "found on both halves of the patients, each image placed by the other half's fit"
    other = {"half 1": "half 2", "half 2": "half 1"}[found_on]
    return f"found on {found_on} of the patients, tested on {other}"


def _evidence(r) -> str:
    metric = METRIC_TEXT[r["metric"]]
    return (
        f"{metric} {r['auroc_in']:.2f} (95% CI {r['auroc_in_low']:.2f}-"
        f"{r['auroc_in_high']:.2f}) inside against {r['auroc_out']:.2f} outside; "
        f"{int(r['fn'])} false negative(s) and {int(r['fp'])} false positive(s) at "
        f"{r['threshold']:.3g}, errors {r['error_lift']:.1f}x as common as overall; "
        f"BH-adjusted p {r['p_adj']:.1e} ({_tested(r['found_on'])}); its images: "
        f"{r['description']}"
    )


def classifier_lines(slices: pd.DataFrame, isolation: pd.DataFrame) -> list[str]:
    """A line per classifier and finding for the summary: its images and errors, then how many
    of the slices tested were flagged, or, where none was, what was tested (a null result is
    a result), or why the finding was not searched."""
    out = []
    for (classifier, finding), rows in slices.groupby(["classifier", "finding"], sort=False):
        head = f"**{classifier}** on {finding}"
        scored = rows[rows["status"] == "scored"]
        if scored.empty:
            out.append(f"{head}: not searched: {rows['reason'].iloc[0]}")
            continue
        own = isolation[(isolation["classifier"] == classifier)
                        & (isolation["finding"] == finding)]  # fmt: skip
        if len(own):
            head += (f" ({int(own['n_images'].iloc[0])} images, {int(own['errors'].iloc[0])} "
                     f"errors at {scored['threshold'].iloc[0]:.3g})")  # fmt: skip
        out.append(f"{head}: {_audited(scored)}")
    return out


def _audited(scored: pd.DataFrame) -> str:
    """How many of a finding's tested slices were flagged, and what was tested (a manifest
    value counted once: it is the same images in every model's space)."""
    value = scored["method"] == "attribute"
    scored = pd.concat([scored[~value], scored[value].drop_duplicates("slice")])
    n = {m: int((scored["method"] == m).sum()) for m in ("mixture", "cluster", "attribute")}
    what = (
        f"over {scored['model'].nunique()} model(s)' spaces, {n['mixture']} mixture slices, "
        f"{n['cluster']} map clusters and {n['attribute']} manifest values in all"
    )
    flagged = scored[scored["flagged"].fillna(False).astype(bool)]
    if flagged.empty:
        return (
            f"no slice flagged of {len(scored)} tested ({what}): no subset of these images "
            "where it fails more than chance allows"
        )
    names = ", ".join(r.slice if r.method == "attribute" else f"{r.model} {r.slice}"
                      for r in flagged.itertuples())  # fmt: skip
    return f"{len(flagged)} of {len(scored)} slices flagged ({names}; see the leads); {what}"
