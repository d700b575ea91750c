"""Embeddings that already exist, keyed by image id, imported shard by shard.

Sources (`source`, format picked by its suffix, or a folder):
- Parquet: an id column and a list/fixed-size-list vector column (read with an id filter);
- `.npy` matrix + `ids` file (.txt one id per line, or .csv/.parquet with `id_column`);
- `.npz` whose keys are image ids (Google CXR Foundation's `precomputed_image_embeddings.npz`);
- a folder of per-image `.npy` / `.npz` / `.tfrecord` files located by `path_template`, formatted
  with the sample row (`{image_id}`, `{patient_id}`, `{study_id}`, and `{rel_dir}` / `{rel_stem}`,
  the image's folder and name without suffix relative to image_root); MIMIC's release, laid out
  like the JPGs, is `{rel_dir}/{image_id}.tfrecord` (patient ids are hashed at ingest).
Token arrays (CXR Foundation's 32 x 128) are flattened, or averaged with `tokens: mean`.
Images the source lacks are reported as missing; vectors with NaN/inf are skipped and recorded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxratlas.embed.models.base import Embedder, ModelConfigError
from cxratlas.embed.models.tfrecord import TFRecordError, read_examples

log = logging.getLogger(__name__)


class PrecomputedEmbedder(Embedder):
    kind = "precomputed"
    reads_images = False

    @staticmethod
    def sample_columns(entry: dict[str, Any]) -> tuple[str, ...]:
        """The ids a folder layout names, e.g. MIMIC's p{patient_id}/s{study_id}."""
        template = str(entry.get("path_template") or "")
        return tuple(c for c in ("patient_id", "study_id") if "{" + c in template)

    def __init__(
        self, name: str, entry: dict[str, Any], state_path: str | None = None, device: str = "auto"
    ):
        super().__init__(name, entry)
        if not entry.get("source"):
            raise ModelConfigError(f"model {name!r}: 'source' is required for kind 'precomputed'")
        self.source = Path(entry["source"]).expanduser()
        if not self.source.exists():
            raise ModelConfigError(f"model {name!r}: source {str(self.source)!r} does not exist")
        self.tokens = entry.get("tokens", "flatten")
        if self.tokens not in ("flatten", "mean"):
            raise ModelConfigError(f"model {name!r}: tokens must be flatten or mean")
        self.id_column = entry.get("id_column", "image_id")
        self.vector_column = entry.get("vector_column", "embedding")
        self.feature = entry.get("feature", "embedding")
        self._dim = entry.get("dim")
        suffix = self.source.suffix.lower()
        if self.source.is_dir():
            self.format = "folder"
            if not entry.get("path_template"):
                raise ModelConfigError(
                    f"model {name!r}: a folder source needs 'path_template', "
                    "e.g. '{image_id}.npy'"
                )
        elif suffix in (".parquet", ".pq"):
            self.format = "parquet"
        elif suffix == ".npy":
            self.format = "npy"
            if not entry.get("ids"):
                raise ModelConfigError(
                    f"model {name!r}: a .npy source needs 'ids', the file listing its row ids"
                )
        elif suffix == ".npz":
            self.format = "npz"
        else:
            raise ModelConfigError(
                f"model {name!r}: source {str(self.source)!r}: use a Parquet, .npy, .npz file "
                "or a folder"
            )

    # -- reading -------------------------------------------------------------------------------
    def _vector(self, value: Any, where: str) -> np.ndarray:
        arr = np.asarray(value, np.float32)
        if arr.ndim > 1 and self.tokens == "mean":
            arr = arr.reshape(-1, arr.shape[-1]).mean(0)
        arr = arr.ravel()
        if self._dim is None:
            self._dim = int(arr.size)
        if arr.size != self._dim:
            raise ModelConfigError(
                f"model {self.name!r}: {where} has {arr.size} values, expected {self._dim}"
            )
        return arr

    def _from_parquet(self, ids: list[str]) -> dict[str, Any]:
        import pyarrow.parquet as pq

        names = pq.ParquetFile(self.source).schema_arrow.names
        for col in (self.id_column, self.vector_column):
            if col not in names:
                raise ModelConfigError(
                    f"model {self.name!r}: {self.source} has no column {col!r}; columns: {names}"
                )
        table = pq.read_table(
            self.source,
            columns=[self.id_column, self.vector_column],
            filters=[(self.id_column, "in", ids)],
        )
        keys = [str(k) for k in table.column(self.id_column).to_pylist()]
        return dict(zip(keys, table.column(self.vector_column).to_pylist(), strict=True))

    def _row_ids(self) -> list[str]:
        path = Path(self.entry["ids"]).expanduser()
        if not path.exists():
            raise ModelConfigError(f"model {self.name!r}: ids file {str(path)!r} not found")
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str)
        else:
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
        col = self.id_column if self.id_column in frame.columns else frame.columns[0]
        return frame[col].astype(str).tolist()

    def _from_npy(self, ids: list[str]) -> dict[str, Any]:
        matrix = np.load(self.source, mmap_mode="r")
        row_ids = self._row_ids()
        if len(row_ids) != len(matrix):
            raise ModelConfigError(
                f"model {self.name!r}: {self.source} has {len(matrix)} rows but "
                f"{self.entry['ids']} lists {len(row_ids)} ids"
            )
        index = {k: i for i, k in enumerate(row_ids)}
        return {k: np.asarray(matrix[index[k]]) for k in ids if k in index}

    def _from_npz(self, ids: list[str]) -> dict[str, Any]:
        with np.load(self.source) as data:
            keys = set(data.files)
            return {k: data[k] for k in ids if k in keys}

    def _read_file(self, path: Path) -> Any:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return np.load(path)
        if suffix == ".npz":
            with np.load(path) as data:
                key = self.feature if self.feature in data.files else None
                if key is None and len(data.files) == 1:
                    key = data.files[0]
                if key is None:
                    raise ValueError(f"no array {self.feature!r} (has {data.files})")
                return data[key]
        if suffix in (".tfrecord", ".tfrec"):
            examples = read_examples(path)
            if not examples or self.feature not in examples[0]:
                raise ValueError(f"no feature {self.feature!r} in its first record")
            return examples[0][self.feature]
        raise ValueError(f"unsupported per-image file type {suffix!r}")

    def lookup(self, rows: pd.DataFrame) -> tuple[list[str], np.ndarray, list[dict], list[str]]:
        """(embedded ids, matrix, skipped [{image_id, reason}], missing ids) for sample rows."""
        ids = rows["image_id"].astype(str).tolist()
        skipped: list[dict[str, str]] = []
        values: dict[str, Any] = {}
        if self.format == "folder":
            template = self.entry["path_template"]
            for row in rows.to_dict("records"):
                try:
                    rel = template.format(**_template_fields(row))
                except (KeyError, ValueError) as exc:
                    raise ModelConfigError(
                        f"model {self.name!r}: path_template {template!r} needs {exc}; the "
                        f"sample has {sorted(row)}"
                    ) from exc
                path = self.source / rel
                if not path.exists():
                    continue
                try:
                    values[str(row["image_id"])] = self._read_file(path)
                except (OSError, ValueError, TFRecordError) as exc:
                    skipped.append({"image_id": str(row["image_id"]), "reason": f"{path}: {exc}"})
        else:
            values = getattr(self, f"_from_{self.format}")(ids)
        out_ids, vectors, missing = [], [], []
        bad = {s["image_id"] for s in skipped}
        for image_id in ids:
            if image_id in bad:
                continue
            if image_id not in values or values[image_id] is None:
                missing.append(image_id)
                continue
            vec = self._vector(values[image_id], f"{self.source} [{image_id}]")
            if not np.isfinite(vec).all():
                skipped.append(
                    {"image_id": image_id, "reason": f"{self.source} [{image_id}]: NaN/inf values"}
                )
                continue
            out_ids.append(image_id)
            vectors.append(vec)
        matrix = np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)
        return out_ids, matrix, skipped, missing

    # -- the Embedder contract (images are never read) -----------------------------------------
    def preprocess(self, img):  # pragma: no cover - never called: lookup() replaces reading
        raise NotImplementedError("precomputed embeddings are looked up, not computed")

    def embed(self, batch):  # pragma: no cover
        raise NotImplementedError("precomputed embeddings are looked up, not computed")

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise ModelConfigError(
                f"model {self.name!r}: no vector found to tell the dimension; set 'dim'"
            )
        return int(self._dim)


def _template_fields(row: dict[str, Any]) -> dict[str, str]:
    fields = {k: str(v) for k, v in row.items()}
    rel = str(row.get("rel_path") or "")
    fields["rel_dir"] = os.path.dirname(rel)
    fields["rel_stem"] = os.path.splitext(os.path.basename(rel))[0]
    return fields
