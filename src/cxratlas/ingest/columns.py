"""Settings that name manifest columns, checked against the manifest the plan read.

A default names columns most archives have (`sample.stratify_by: [view_position]`, the atlas's
allow-list of patient, view, vendor, sex, age and year columns); a manifest with only `image_id`
and `path` has none of them. So a default gives way where its column is absent (the run says so
in one info line), while a column the user wrote (`cxratlas.config.UserConfig`) that is absent
stops the run before any job, naming the key, the column, the manifest's columns, and the name
to write where the user wrote a column's original name that `dataset.columns` renamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cxratlas.config import UserConfig
from cxratlas.config_errors import closest
from cxratlas.ingest.dicom import TAGS
from cxratlas.ingest.manifest import renamed_hint, snake_case
from cxratlas.subgroups import subgroup_names

# what DICOM headers fill at ingest (`dataset.dicom_tags`); the plan reads no header
DICOM_COLUMNS = (*TAGS.values(), "study_year")
NOT_COLUMNS = ("auto", None)  # values of a column setting that name no column


class ColumnSettingError(ValueError):
    """A column the user named that the manifest lacks."""


@dataclass(frozen=True)
class ColumnSetting:
    """A config key whose value names manifest columns. `at_plan`: used by the plan itself, so
    columns that DICOM headers fill at ingest, after it, do not count; `subgroup`: the column
    must be one the audit groups by (a built-in subgroup or a keep_columns attribute)."""

    key: str
    at_plan: bool = False
    subgroup: bool = False
    where: str = "the manifest"

    def named(self, config: dict[str, Any]) -> list[str]:
        value = config
        for part in self.key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list):
            return [str(v) for v in value]
        return [] if value in NOT_COLUMNS else [str(value)]

    def available(self, manifest: ManifestNames) -> list[str]:
        have = list(manifest.columns)
        if manifest.dicom and not self.at_plan:
            have += [c for c in DICOM_COLUMNS if c not in have]
        if self.subgroup:
            return subgroup_names(pd.DataFrame(columns=have), manifest.attributes)
        return have


# the registry of settings that name columns (finding names: `plan.check_analysis_settings`)
COLUMN_SETTINGS = (
    ColumnSetting("sample.stratify_by", at_plan=True),
    ColumnSetting("privacy.atlas_columns"),
    ColumnSetting("analysis.shortcuts.site", subgroup=True, where="the subgroup columns"),
)


@dataclass(frozen=True)
class ManifestNames:
    """What the settings are checked against: the plan's manifest columns and attributes,
    whether a dataset fills columns from DICOM headers at ingest, and each dataset's renames
    (`dataset.columns`, canonical -> original)."""

    columns: tuple[str, ...]
    attributes: tuple[str, ...] = ()
    dicom: bool = False
    renames: tuple[dict[str, str], ...] = ()

    @classmethod
    def of(cls, columns: Sequence[str], attributes: Sequence[str], specs: list[dict]):
        return cls(
            tuple(columns),
            tuple(attributes),
            any(s.get("dicom_tags") for s in specs),
            tuple(dict(s.get("columns") or {}) for s in specs),
        )


def settled(config: dict[str, Any], key: str, manifest: ManifestNames) -> list[str]:
    """The columns `key` names that the manifest has: what a default leaves after giving way.
    (A column the user wrote that is absent has stopped the plan: `check_column_settings`.)"""
    setting = next(s for s in COLUMN_SETTINGS if s.key == key)
    have = set(setting.available(manifest))
    return [c for c in setting.named(config) if c in have]


def _absent(config: dict[str, Any], manifest: ManifestNames):
    """(setting, absent columns, available columns) for each setting naming an absent one."""
    for setting in COLUMN_SETTINGS:
        have = setting.available(manifest)
        absent = [c for c in setting.named(config) if c not in have]
        if absent:
            yield setting, absent, have


def check_column_settings(
    config: dict[str, Any], manifest: ManifestNames, user: UserConfig | None
) -> None:
    """Raise for an absent column the user wrote (without `user`, nothing is known to be the
    user's: every setting is taken as a default)."""
    for setting, absent, have in _absent(config, manifest):
        layer = user.source(setting.key.split(".")) if user else None
        if layer:
            raise ColumnSettingError(_absent_text(setting, layer, absent, have, manifest))


def left_out_note(config: dict[str, Any], manifest: ManifestNames) -> str | None:
    """One line naming the defaults that gave way (once `check_column_settings` has passed,
    every absent column is a default's)."""
    gave_way = [f"{setting.key} {absent}" for setting, absent, _ in _absent(config, manifest)]
    if not gave_way:
        return None
    return f"defaults left out, their columns not in the manifest: {'; '.join(gave_way)}"


def _absent_text(
    setting: ColumnSetting, layer: str, absent: list[str], have: list[str], m: ManifestNames
) -> str:
    """The key, the file that set it, the absent columns, those there are, and the name to
    write where one is near (renamed by `dataset.columns`, snake_cased, or misspelt)."""
    text = (
        f"{setting.key} (in {layer}): column(s) {absent} are not in {setting.where} "
        f"(columns: {have})"
    )
    for renames in m.renames:
        hint = renamed_hint(absent, renames)
        text += hint if hint not in text else ""
    for name in absent:
        near = snake_case(name) if snake_case(name) in have else closest(name, have)
        if near and near != name and f"write {near!r}" not in text:
            text += f"; did you mean {near!r}?"
    if setting.at_plan and m.dicom and set(absent) & set(DICOM_COLUMNS):
        text += "; values filled from DICOM headers arrive only at ingest, after the draw"
    if setting.subgroup:
        text += "; a column of your own becomes one through the dataset's keep_columns"
    return text
