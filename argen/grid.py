"""Captioned image grids: what a person looks at after training, sampling or evaluating."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

from argen.svg.rasterize import rasterize


def as_image(output, size: int = 128) -> Image.Image:
    """A sampled output as an RGB image: PIL images pass through, SVG strings are rasterized."""
    if isinstance(output, Image.Image):
        return output.convert("RGB")
    if isinstance(output, str):
        return rasterize(output, size)
    raise TypeError(f"cannot show an output of type {type(output).__name__} in a grid")


def image_grid(images: list, captions: list[str] | None = None, ncol: int = 8, cell: int = 128,
               caption_lines: int = 2) -> Image.Image:
    """Tile ``images`` (PIL images or SVG strings) ``ncol`` wide, each upscaled to ``cell`` px,
    with its caption (wrapped to ``caption_lines`` lines) underneath."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    font = ImageFont.load_default()
    chars = max(8, cell // 6)
    text_h = 12 * caption_lines + 4 if captions else 0
    ncol = min(ncol, len(images))
    nrow = -(-len(images) // ncol)
    grid = Image.new("RGB", (ncol * cell, nrow * (cell + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, output in enumerate(images):
        x, y = (i % ncol) * cell, (i // ncol) * (cell + text_h)
        grid.paste(as_image(output, cell).resize((cell, cell), Image.NEAREST), (x, y))
        if captions:
            lines = textwrap.wrap(captions[i], chars)[:caption_lines]
            for j, line in enumerate(lines):
                draw.text((x + 2, y + cell + 2 + 12 * j), line, fill="black", font=font)
    return grid
