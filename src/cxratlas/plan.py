"""What Snakemake must know before anything runs: how many images the shared sample will hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def count_manifest_rows(path: str) -> int:
    """Rows of a CSV/TSV or Parquet manifest, without loading it (Parquet: footer only)."""
    p = Path(path)
    if "".join(p.suffixes).lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        return pq.ParquetFile(p).metadata.num_rows
    import pyarrow.csv as pacsv

    opts = pacsv.ParseOptions(
        delimiter="\t" if ".tsv" in p.name.lower() else ",", newlines_in_values=True
    )
    reader = pacsv.open_csv(
        p, parse_options=opts, convert_options=pacsv.ConvertOptions(include_columns=[])
    )
    return sum(batch.num_rows for batch in reader)


def planned_images(config: dict[str, Any], demo_dir: str = "resources/demo") -> int:
    """Upper bound on the sample size, known at DAG-build time; it fixes the shard count."""
    from .datasets import dataset_specs, planned_rows

    n = config["sample"].get("n")
    if n is not None:
        return int(n)
    total = 0
    for spec in dataset_specs(config, demo_dir):
        if spec["preset"] == "demo":
            total += int(spec["demo"]["n_images"])
        else:
            total += planned_rows(spec)
    return total
