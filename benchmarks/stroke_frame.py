"""Stroke outlining: the working frame's size against token length and round-trip IoU.

Skia's stroker works to a fixed absolute tolerance, so ``argen.svg.stroke`` scales each icon to a
working frame of ``WORK_FRAME`` units first. A finer frame follows curves more closely but writes
more, shorter pieces, and every piece costs tokens. This encodes every 200th Tabler outline icon
(stroke-drawn) at grid 200 for a few frames and conic tolerances and reports token-length
percentiles and the mean 64 px raster IoU between the original (resvg) and the decoded tokens.

    python benchmarks/stroke_frame.py [--every 200] [--grid 200]
"""

from __future__ import annotations

import argparse

import numpy as np

import argen.svg.stroke as stroke
from argen.data.iconsets import read_set
from argen.svg import SVGTokenizer
from argen.svg.metrics import raster_iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--grid", type=int, default=200)
    args = ap.parse_args()
    icons = [i.svg for i in read_set("tabler") if i.style == "outline"][::args.every]
    print(f"{len(icons)} Tabler outline icons, grid {args.grid}")
    print("| frame | conic tolerance | tokens p50 | tokens p90 | mean IoU | min IoU |\n|---|---|---|---|---|---|")
    for frame, tol in [(4096, 0.25), (512, 0.25), (256, 0.25), (256, 1.0), (128, 0.5)]:
        stroke.WORK_FRAME, stroke.CONIC_TOLERANCE = float(frame), tol
        tok = SVGTokenizer(grid=args.grid, max_len=1 << 20)
        lens, ious = [], []
        for svg in icons:
            ids = tok.encode(svg)
            lens.append(len(ids))
            ious.append(raster_iou(svg, tok.decode(ids), 64))
        print(f"| {frame} | {tol} | {np.percentile(lens, 50):.0f} | {np.percentile(lens, 90):.0f} | "
              f"{np.mean(ious):.4f} | {min(ious):.3f} |")


if __name__ == "__main__":
    main()
