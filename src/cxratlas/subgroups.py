"""The subgroups an audit looks at, in one registry: which manifest columns define them, how
age becomes bands, and which column plays the acquisition site.

Asked by the cluster descriptions (top values per cluster), the bias and shortcut audit
(attribute probes, per-subgroup AUROC, within-site probes) and the atlas (`age_band`, so any map
can be coloured by it). A dataset's own attributes (`keep_columns`: site, race, insurance, ...)
join the built-in ones.
"""

from __future__ import annotations

import pandas as pd

# (column, what it is); the audit probes each one the manifest has with two values or more
BUILT_IN = {
    "sex": "patient sex",
    "age_band": "age in bands (from age)",
    "view_position": "view (AP, PA, LATERAL, ...)",
    "manufacturer": "scanner vendor",
    "dataset": "source dataset",
    "study_year": "year of the study",
}
AGE_EDGES = [0, 20, 40, 60, 80, 200]
AGE_NAMES = ["<20", "20-39", "40-59", "60-79", "80+"]
# columns that stand for the acquisition site, in the order `site: auto` tries them
SITE_CANDIDATES = ("site", "hospital", "institution", "dataset", "manufacturer")
MISSING = ("", "unknown", "nan", "<NA>")


def age_band(age: pd.Series) -> pd.Series:
    """Ages as bands (`<20`, `20-39`, ... `80+`), NA where unknown."""
    bands = pd.cut(pd.to_numeric(age, errors="coerce"), AGE_EDGES, right=False, labels=AGE_NAMES)
    return bands.astype("string")


def subgroup_names(meta: pd.DataFrame, attributes: tuple[str, ...] = ()) -> list[str]:
    """The subgroup columns of this manifest: the built-in ones it has, then its attributes."""
    have = set(meta.columns) | ({"age_band"} if "age" in meta.columns else set())
    return [c for c in dict.fromkeys((*BUILT_IN, *attributes)) if c in have]


def subgroup_frame(meta: pd.DataFrame, attributes: tuple[str, ...] = ()) -> pd.DataFrame:
    """One string column per subgroup (same index as `meta`), NA where the value is unknown."""
    out = {}
    for name in subgroup_names(meta, attributes):
        values = age_band(meta["age"]) if name == "age_band" else meta[name].astype("string")
        out[name] = values.mask(values.isin(MISSING))
    return pd.DataFrame(out, index=meta.index)


def resolve_site(groups: pd.DataFrame, setting: str | None) -> tuple[str | None, str]:
    """(site column, why). `auto`: the first of SITE_CANDIDATES with two values or more;
    a column name: that column; null: none (within-site checks are skipped)."""
    if setting is None:
        return None, "analysis.shortcuts.site is null"
    if setting != "auto":
        if setting not in groups:
            raise KeyError(
                f"analysis.shortcuts.site {setting!r} is not a subgroup column; "
                f"they are {list(groups.columns)} (add it to the dataset's keep_columns)"
            )
        return setting, f"{setting}: named in analysis.shortcuts.site"
    for name in SITE_CANDIDATES:
        if name in groups and groups[name].nunique() >= 2:
            return name, f"{name}: the first of {list(SITE_CANDIDATES)} with two values or more"
    return None, f"no column of {list(SITE_CANDIDATES)} has two values or more"
