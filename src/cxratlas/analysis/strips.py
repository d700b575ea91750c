"""Captioned strips: a row of thumbnails, each with the few facts a reader needs to judge it
under it (its label, the attribute in question, its score), so a strip of examples says which
image is a positive, which vendor, which outlier, without a lookup."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

LINE = 13  # caption line height (px) at FONT_SIZE
FONT_SIZE = 10
PAD = 4


def font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    """DejaVu Sans from matplotlib (every env that draws has it): PIL's built-in font has no
    "×" or "≥", which names and captions use."""
    from matplotlib import font_manager

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def fit(text: str, width: int, face: ImageFont.FreeTypeFont) -> str:
    """`text`, cut with an ellipsis where it is wider than `width` pixels."""
    if face.getlength(text) <= width:
        return text
    while text and face.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def captioned_strip(
    items: list[tuple[bytes, list[str]]], legend: str = "", thumb: int = 104
) -> bytes:
    """One PNG row: each (thumbnail PNG, caption lines) as the image with its lines under it,
    each line cut to the thumbnail's width; `legend`, above the row, says what the lines are."""
    face = font()
    lines = max((len(c) for _, c in items), default=0)
    width = max(len(items), 1) * (thumb + PAD) + PAD
    head = LINE + PAD if legend else 0
    sheet = Image.new("L", (width, head + thumb + lines * LINE + 2 * PAD), color=255)
    draw = ImageDraw.Draw(sheet)
    if legend:
        draw.text((PAD, PAD), fit(legend, width - 2 * PAD, face), fill=60, font=face)
    for i, (png, caption) in enumerate(items):
        x, top = PAD + i * (thumb + PAD), head + PAD
        with Image.open(io.BytesIO(png)) as img:
            img = img.convert("L")
            img.thumbnail((thumb, thumb))
            sheet.paste(img, (x + (thumb - img.width) // 2, top + (thumb - img.height) // 2))
        for j, text in enumerate(caption):
            draw.text((x, top + thumb + 2 + j * LINE), fit(text, thumb, face), fill=0, font=face)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
