"""What could not be used, and why: rows dropped at ingest and images each model's shards skipped,
gathered from the per-shard reports into one table, a summary and a figure for the report."""

from __future__ import annotations

import pandas as pd

from cxratlas.figures import save_figure
from cxratlas.io import ShardReport

# reason text (lower case) -> class, first match wins (messages of imaging, dicom, precomputed)
REASONS = (
    ("not found", "missing file"),
    ("empty file", "empty file"),
    ("dicom", "bad DICOM"),
    ("nan/inf", "NaN/inf embedding"),
    ("truncated", "truncated file"),
    ("cannot decode", "undecodable image"),
)


def reason_class(reason: str) -> str:
    reason = reason.lower()
    for needle, name in REASONS:
        if needle in reason:
            return name
    return "other"


def skipped_images(dropped_path: str, report_paths: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per dropped or skipped image, per stage/model totals) from ingest's dropped rows
    and the per-shard reports (each names its model and shard)."""
    dropped = pd.read_parquet(dropped_path)
    rows = [
        {"stage": "ingest", "model": "", "shard": -1, "image_id": r.image_id, "reason": r.reason}
        for r in dropped.itertuples()
    ]
    counts: dict[str, dict[str, int]] = {}
    for path in report_paths:
        rep = ShardReport.read(path)
        total = counts.setdefault(rep.model, {"images": 0, "skipped": 0})
        total["images"] += rep.images
        total["skipped"] += len(rep.skipped)
        rows += [
            {
                "stage": "embed",
                "model": rep.model,
                "shard": rep.shard,
                "image_id": s["image_id"],
                "reason": s["reason"],
            }  # fmt: skip
            for s in rep.skipped
        ]
    table = pd.DataFrame(rows, columns=["stage", "model", "shard", "image_id", "reason"])
    table["reason_class"] = table["reason"].map(reason_class)
    summary = pd.DataFrame(
        [{"stage": "ingest", "model": "", "images": None, "skipped": len(dropped)}]
        + [{"stage": "embed", "model": m, **c} for m, c in counts.items()]
    )
    by_class = table.groupby(["stage", "model"])["reason_class"].agg(
        lambda s: "; ".join(f"{k} {v}" for k, v in s.value_counts().items())
    )
    summary["reasons"] = [by_class.get((r.stage, r.model), "") for r in summary.itertuples()]
    return table, summary


def quality_plot(table: pd.DataFrame, summary: pd.DataFrame, out_path: str) -> None:
    """Skipped images per stage and model, stacked by reason; a sentence when none was."""
    from cxratlas.analysis.plots import legend_beside, plt, say_why

    if table.empty:
        fig, ax = plt.subplots(figsize=(7, 1.2))
        say_why(ax, _nothing_skipped(summary), fontsize=10)
        save_figure(fig, out_path, dpi=120)
        plt.close(fig)
        return
    labels = [f"{r.stage} {r.model}".strip() for r in summary.itertuples()]
    classes = sorted(table["reason_class"].unique()) or ["none"]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * len(labels)))
    left = [0] * len(labels)
    colours = plt.get_cmap("tab10")
    for j, cls in enumerate(classes):
        sub = table[table["reason_class"] == cls]
        counts = [int(((sub["stage"] == r.stage) & (sub["model"] == r.model)).sum())
                  for r in summary.itertuples()]  # fmt: skip
        ax.barh(range(len(labels)), counts, left=left, color=colours(j % 10), label=cls)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("images dropped or skipped")
    legend_beside(ax, title="reason")
    save_figure(fig, out_path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _nothing_skipped(summary: pd.DataFrame) -> str:
    embedded = summary[summary["stage"] == "embed"]
    per_model = ", ".join(f"{r.model} {int(r.images):,}" for r in embedded.itertuples())
    return ("Every image was read: ingest dropped no row, and no model skipped an image\n"
            f"(images embedded: {per_model or 'none'})")  # fmt: skip
