"""What a slice's images share, from the enrichment machinery (`analysis.enrichment`): every
subgroup column (view, site, vendor, sex, age band, dataset, the user's attributes) and every
other finding, tested inside the slice against the images outside it.

"all positive · view_position AP 85% (24% outside) · support_devices 71% (10% outside)": the
class mix first, then up to `MAX_PARTS` values at least `MIN_RATIO` times as common inside as
outside (at least `MIN_COUNT` images, one-sided Fisher's p below `ALPHA` after BH over the
slice's own tests), by odds ratio. The first of them is the attribute its strip's captions
show. The indicators are `enrichment.attribute_indicators` (the same values the cluster
enrichment tests); the tests are vectorised, since every slice of every finding is described.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxratlas.analysis.enrichment import attribute_indicators
from cxratlas.analysis.metrics import bh_adjust
from cxratlas.analysis.naming import ALPHA, MIN_RATIO, SEP  # a slice reads as a cluster does
from cxratlas.subgroups import subgroup_frame

MAX_PARTS = 3
MIN_COUNT = 3


@dataclass
class Describer:
    """The columns a slice is described by, over a finding's labelled images (row order): the
    other findings and one indicator per common value of each subgroup column, as one matrix
    (1, 0, NaN unknown), so a slice's tests are two matrix products and one vectorised
    hypergeometric tail (the one-sided Fisher's exact test), not a loop of tables."""

    names: list[str]  # "support_devices", "view_position=AP", ...
    values: np.ndarray  # (n, q) 1.0 / 0.0 / NaN
    groups: pd.DataFrame  # the subgroup columns as strings (for captions)
    findings: pd.DataFrame

    @classmethod
    def of(cls, meta: pd.DataFrame, findings: list[str], attributes: tuple[str, ...], own: str):
        groups = subgroup_frame(meta, attributes).reset_index(drop=True)
        others = meta[[f for f in findings if f != own and f in meta.columns]]
        others = others.reset_index(drop=True)
        indicators = attribute_indicators(groups, tuple(groups.columns))
        table = pd.concat([others.astype("Float64").where(others.isin([0, 1])),
                           indicators.astype("Float64")], axis=1)  # fmt: skip
        values = table.to_numpy(np.float64, na_value=np.nan)
        return cls(list(table.columns), values, groups, others)

    def subset(self, rows: np.ndarray) -> Describer:
        return Describer(self.names, self.values[rows], self.groups.iloc[rows].reset_index(
            drop=True), self.findings.iloc[rows].reset_index(drop=True))  # fmt: skip

    def enrichment(self, member: np.ndarray) -> pd.DataFrame:
        """Per column: prevalence inside and outside, odds ratio (+0.5), one-sided Fisher p
        (more common inside), BH over the slice's tests."""
        from scipy.stats import hypergeom

        known = ~np.isnan(self.values)
        pos = np.nan_to_num(self.values) == 1
        m = member.astype(np.float64)
        a, n_in = m @ pos, m @ known
        total_pos, total = pos.sum(0), known.sum(0)
        b, c = n_in - a, total_pos - a
        d = total - n_in - c
        with np.errstate(invalid="ignore", divide="ignore"):
            out = pd.DataFrame({
                "finding": self.names, "positives_in": a, "prevalence_in": a / n_in,
                "prevalence_out": c / (c + d),
                "odds_ratio": (a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5)),
                "p_value": hypergeom.sf(a - 1, total, total_pos, n_in),
            })  # fmt: skip
        out["p_adjusted"] = bh_adjust(out["p_value"].to_numpy(float))
        return out

    def describe(self, member: np.ndarray, y: np.ndarray) -> tuple[str, str]:
        """(description, the column its first part names, or "") of the slice `member`."""
        share = float(y[member].mean()) if member.any() else np.nan
        mix = f"{share:.0%} positive" if 0 < share < 1 else ("all positive" if share == 1
                                                              else "all negative")  # fmt: skip
        if not self.names:
            return mix, ""
        table = self.enrichment(member)
        ratio = table["prevalence_in"] / table["prevalence_out"].replace(0, np.nan)
        keep = table[(table["p_adjusted"] < ALPHA) & (table["positives_in"] >= MIN_COUNT)
                     & (ratio.fillna(np.inf) >= MIN_RATIO)]  # fmt: skip
        keep = keep.sort_values("odds_ratio", ascending=False).head(MAX_PARTS)
        parts = [_part(r) for r in keep.itertuples()]
        column = keep["finding"].iloc[0].split("=", 1)[0] if len(keep) else ""
        return SEP.join([mix, *parts]), column


def _part(r) -> str:
    name = r.finding.replace("=", " ")
    return f"{name} {r.prevalence_in:.0%} ({r.prevalence_out:.0%} outside)"
