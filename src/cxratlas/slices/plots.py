"""Pictures of the slices: a strip of each slice's most typical errors, every image captioned
(its label, the classifier's score, the attribute the slice's description leads with), and the
isolation chart (which model's map isolates a classifier's errors)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from cxratlas.analysis.strips import LINE, PAD, fit, font


@dataclass
class Tile:
    png: bytes | None
    caption: list[str]  # a line each: "FN  y=1", "score 0.12", "view_position AP"


def strip_sheet(rows: list[tuple[str, list[Tile]]], title: str = "", thumb: int = 96) -> bytes:
    """One PNG: a row per slice, its title (wrapped) above its tiles, each tile captioned."""
    pad, line, face = PAD, LINE, font(11)
    k = max((len(tiles) for _, tiles in rows), default=1)
    width = max(k * (thumb + pad) + pad, 640)
    head = _wrap(title, width - 2 * pad, face) if title else []
    titles = [_wrap(name, width - 2 * pad, face) for name, _ in rows]
    caption_lines = max((len(t.caption) for _, tiles in rows for t in tiles), default=0)
    heights = [len(t) * line + thumb + caption_lines * line + 2 * pad for t in titles]
    top = len(head) * line + (pad if head else 0)
    sheet = Image.new("L", (width, top + max(sum(heights), 2 * line)), color=255)
    draw = ImageDraw.Draw(sheet)
    for i, text in enumerate(head):
        draw.text((pad, i * line), text, fill=0, font=face)
    if not rows:
        draw.text((pad, top + pad), "no flagged slice", fill=0, font=face)
    y = top
    for (_, tiles), lines, h in zip(rows, titles, heights, strict=True):
        for i, text in enumerate(lines):
            draw.text((pad, y + i * line), text, fill=0, font=face)
        y0 = y + len(lines) * line
        for c, tile in enumerate(tiles):
            x = pad + c * (thumb + pad)
            if tile.png is not None:
                with Image.open(io.BytesIO(tile.png)) as img:
                    img = img.convert("L")
                    img.thumbnail((thumb, thumb))
                    sheet.paste(img, (x, y0))
            for i, text in enumerate(tile.caption):
                draw.text((x, y0 + thumb + 1 + i * line), fit(text, thumb, face), fill=0,
                          font=face)  # fmt: skip
        y += h
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _wrap(text: str, width: int, font) -> list[str]:
    """`text` in lines that fit `width`, broken at " · " or spaces."""
    lines, current = [], ""
    for word in text.split(" "):
        trial = f"{current} {word}".strip()
        if current and font.getlength(trial) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return [*lines, current] if current else lines


def isolation_figure(iso: pd.DataFrame, out_path: str) -> None:
    """Per classifier, a grid of findings by models: the share of the classifier's errors its
    flagged slices hold in that model's space, and how many there are ("skipped": the finding
    could not be searched, `isolation.parquet` says why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxratlas.analysis.plots import text_colour_on
    from cxratlas.figures import save_figure

    classifiers = list(dict.fromkeys(iso["classifier"])) or ["(none)"]
    fig, axes = plt.subplots(1, len(classifiers), squeeze=False,
                             figsize=(2.5 + 1.2 * max(1, iso["model"].nunique()) * len(classifiers),
                                      1.5 + 0.35 * max(1, iso["finding"].nunique())))  # fmt: skip
    if iso.empty:
        axes[0][0].axis("off")
        axes[0][0].text(0.5, 0.5, "no classifier scores a finding of this sample",
                        ha="center", va="center")  # fmt: skip
    for ax, name in zip(axes[0], classifiers if len(iso) else [], strict=False):
        sub = iso[iso["classifier"] == name]
        grid = sub.pivot_table(index="finding", columns="model", values="errors_isolated",
                               aggfunc="first", dropna=False)  # fmt: skip
        flagged = sub.pivot_table(index="finding", columns="model", values="slices_flagged",
                                  aggfunc="first").reindex_like(grid)  # fmt: skip
        status = sub.pivot_table(index="finding", columns="model", values="status",
                                 aggfunc="first").reindex_like(grid)  # fmt: skip
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.9")
        ax.imshow(np.ma.masked_invalid(grid.to_numpy(float)), vmin=0, vmax=1, cmap=cmap,
                  aspect="auto")  # fmt: skip
        for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
            if status.iat[i, j] != "scored":
                ax.text(j, i, "skipped", ha="center", va="center", fontsize=7, color="0.3")
                continue
            text = f"{v:.0%}\n{int(flagged.iat[i, j])} slice(s)"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color=text_colour_on(cmap(v)))  # fmt: skip
        ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right")
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_title(f"{name}:\nthe errors its flagged map slices hold", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_path, dpi=120)
    plt.close(fig)
