"""Subgroups brought back in: which images a `subgroups` entry names, and its checks at plan time.

An entry is one of:

- a selection exported from Embedding Atlas ("Export Selection": Parquet, CSV, JSON or JSONL;
  the server writes every column of the selected rows, `image_id` among them), or any table
  with an `image_id` column (`id_column` names another);
- a plain list of image ids, one a line (`.txt`);
- a query over the manifest's canonical columns (and `age_band`), as pandas'
  `DataFrame.query` reads it: `view_position == "AP" and age >= 80`, `effusion == 1`.

A file's members are its ids; a query's are the images it selects among the analysed ones. The
plan checks every entry before any job (`subgroup_plan.py`): a missing or unreadable file, no id
column, ids that are not in the shared sample, a query naming an unknown column, a subgroup that
is empty or is the whole sample each stop the run with the key named. A selection saved
before the archive was pruned may name images no longer sampled: `absent: drop` leaves them out
with a warning (the tables count them: `members` against `in_atlas`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

TABLE_FORMATS = (".parquet", ".pq", ".csv", ".tsv", ".json", ".jsonl", ".ndjson")
ID_LIST_FORMATS = (".txt", ".ids", ".list")
SHOWN = 5  # ids shown in an error
UNREAD = "unread_at_plan"  # attrs key: columns only the ingest job fills (DICOM headers)


class SubgroupError(ValueError):
    """A `subgroups` entry that cannot name images; the message names its key."""


@dataclass(frozen=True)
class SubgroupSpec:
    """One `subgroups` entry: a selection `file` (its `id_column`) or a `query`."""

    name: str
    file: str | None = None
    query: str | None = None
    id_column: str = "image_id"
    absent: str = "stop"  # ids not in the sample: stop the plan, or drop them with a warning

    @classmethod
    def of(cls, name: str, entry: str | dict[str, Any]) -> SubgroupSpec:
        if isinstance(entry, str):
            return cls(name, file=entry)
        return cls(name, **entry)

    @property
    def key(self) -> str:
        return f"subgroups.{self.name}"

    @property
    def source(self) -> str:
        """What the subgroup is, in one line (tables, figures and the report say it)."""
        return f"query: {self.query}" if self.query else f"selection: {self.file}"


def subgroup_specs(subgroups: dict[str, Any] | None) -> list[SubgroupSpec]:
    return [SubgroupSpec.of(name, entry) for name, entry in (subgroups or {}).items()]


def read_selection(spec: SubgroupSpec) -> pd.Index:
    """The image ids of a selection file, in file order, each once."""
    path = Path(spec.file)
    if not path.is_file():
        raise SubgroupError(
            f"{spec.key}: selection file {spec.file} not found (a relative path is read from "
            f"the working directory, {os.getcwd()})"
        )
    suffix = path.suffix.lower()
    if suffix in ID_LIST_FORMATS:
        lines = (line.strip() for line in path.read_text().splitlines())
        ids = [line for line in lines if line and not line.startswith("#")]
    elif suffix in TABLE_FORMATS:
        ids = _id_column(path, suffix, spec)
    else:
        raise SubgroupError(
            f"{spec.key}: {spec.file} is not a selection file: export the selection from "
            f"Embedding Atlas as Parquet, CSV, JSON or JSONL ({', '.join(TABLE_FORMATS)}), or "
            f"list one image id a line in a {' / '.join(ID_LIST_FORMATS)} file"
        )
    ids = pd.Index([str(i).strip() for i in ids if pd.notna(i) and str(i).strip()]).unique()
    if ids.empty:
        raise SubgroupError(f"{spec.key}: {spec.file} holds no image id")
    return ids


def _id_column(path: Path, suffix: str, spec: SubgroupSpec) -> list:
    """The id column of an exported table, read alone where the format allows."""
    column = spec.id_column
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        _has(column, names, spec)
        return pq.read_table(path, columns=[column]).column(column).to_pylist()
    if suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        names = list(pd.read_csv(path, sep=sep, nrows=0).columns)
        _has(column, names, spec)
        frame = pd.read_csv(path, sep=sep, usecols=[column], dtype=str, keep_default_na=False)
        return frame[column].tolist()
    rows = _json_rows(path, suffix, spec)
    names = list(dict.fromkeys(k for row in rows[:100] for k in row))
    _has(column, names, spec)
    return [row.get(column) for row in rows]


def _json_rows(path: Path, suffix: str, spec: SubgroupSpec) -> list[dict]:
    text = path.read_text()
    try:
        if suffix == ".json":
            rows = json.loads(text) if text.strip() else []
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise SubgroupError(f"{spec.key}: {spec.file} is not valid JSON ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SubgroupError(
            f"{spec.key}: {spec.file} is not a list of records (Embedding Atlas exports "
            "JSON as one object per selected row)"
        )
    return rows


def _has(column: str, names: list[str], spec: SubgroupSpec) -> None:
    if column not in names:
        raise SubgroupError(
            f"{spec.key}: {spec.file} has no column {column!r} (its columns: {names[:20]}); "
            "Embedding Atlas's exports carry image_id; name another column with "
            "{file: ..., id_column: ...}"
        )


def query_frame(manifest: pd.DataFrame) -> pd.DataFrame:
    """The columns a query may name: the manifest's canonical columns and `age_band`."""
    from cxratlas.subgroups import age_band

    if "age" in manifest and "age_band" not in manifest:
        manifest = manifest.assign(age_band=age_band(manifest["age"]))
    return manifest


def query_members(spec: SubgroupSpec, frame: pd.DataFrame) -> pd.Index:
    """The image ids (`frame`'s index) the query selects; unknown values count as false."""
    from pandas.errors import UndefinedVariableError

    shown = [c for c in frame.columns if c not in ("path", "rel_path")]
    try:
        result = frame.eval(spec.query, engine="python", local_dict={}, global_dict={})
    except UndefinedVariableError as exc:
        raise SubgroupError(
            f"{spec.key}: query {spec.query!r} names an unknown column ({exc}); the manifest's "
            f"columns are {shown}"
        ) from None
    except (SyntaxError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SubgroupError(
            f"{spec.key}: query {spec.query!r} cannot be evaluated ({type(exc).__name__}: "
            f"{exc}); write it as pandas' DataFrame.query reads it, e.g. "
            'view_position == "AP" and age >= 80'
        ) from None
    if not isinstance(result, pd.Series) or not pd.api.types.is_bool_dtype(result.dtype):
        what = getattr(result, "dtype", type(result).__name__)
        raise SubgroupError(
            f"{spec.key}: query {spec.query!r} gives {what} values, not true or false per image"
        )
    return frame.index[result.fillna(False).to_numpy(bool)]


def members(spec: SubgroupSpec, frame: pd.DataFrame) -> pd.Index:
    """The subgroup's image ids: a file's ids, or the rows of `frame` (indexed by image_id,
    the images analysed) that its query selects."""
    if spec.query:
        return query_members(spec, query_frame(frame))
    return read_selection(spec)


def check_members(spec: SubgroupSpec, ids: pd.Index, sample: pd.Index, say=log.warning) -> pd.Index:
    """Every id in the sample (or, with `absent: drop`, those that are not left out with a
    warning); at least one image in the subgroup and one outside it. Returns the ids kept."""
    absent = ids.difference(sample, sort=False)
    what = (f"{len(absent)} of the {len(ids)} image id(s) in {spec.file} are not in the shared "
            f"sample, e.g. {list(absent[:SHOWN])}")  # fmt: skip
    if len(absent) and spec.absent != "drop":
        raise SubgroupError(
            f"{spec.key}: {what}; a selection exported from this run's atlas holds only sampled "
            "images: was it exported from another run, or have these images left the archive "
            f"since? To leave them out, set `{spec.key}.absent: drop`"
        )
    if len(absent):
        say(f"{spec.key}: {what}; left out (`absent: drop`)")
        ids = ids.intersection(sample, sort=False)
    if ids.empty:
        raise SubgroupError(
            f"{spec.key}: {spec.source} selects none of the {len(sample)} sampled images"
        )
    if len(ids) >= len(sample):
        raise SubgroupError(
            f"{spec.key}: {spec.source} holds every one of the {len(sample)} sampled images: "
            "nothing is left to compare it with"
        )
    return ids
