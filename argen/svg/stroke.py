"""Strokes outlined exactly: an SVG stroke becomes a filled outline through Skia's stroker.

The tokenizer only draws filled paths, so a visible stroke is turned into the area it covers: its
width, joins (miter with the miter limit, round, bevel), caps (butt, round, square) and dashes, as
SVG defines them. The geometry is Skia's (``skia-pathops``, ``Path.stroke``), the stroker browsers
and resvg's peers use, not hand-written offset curves.

Three details keep the result faithful:

* The stroke is computed in the element's **user space** and then mapped through the element's
  transform, so a non-uniform scale or a skew distorts the stroke as SVG says it must.
* Skia approximates offset curves to a fixed absolute tolerance (about a quarter unit), so the path
  is first scaled to a working frame where the whole icon spans :data:`WORK_FRAME` units, whatever
  the SVG's own units: the error is then about 1/1000 of the icon's side (0.2 steps at grid 200).
  A finer frame only lengthens the token sequences (BENCHMARKS.md, "Stroke outlining").
* Round joins and caps come back as conics; they are split into quadratics within
  :data:`CONIC_TOLERANCE` (working-frame units) and elevated exactly to cubics.
* The outline is simplified (overlaps from inner joins merged, winding fixed) when it is small
  enough for that to be cheap; either way it is filled with the nonzero rule, as Skia fills strokes.
``vector-effect="non-scaling-stroke"`` is refused (reason ``"stroke"``): its width lives in the
viewport's units, which this module does not model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from argen.svg.errors import SVGError
from argen.svg.geometry import Affine, Path, Point, compose, quad_to_cubic, scale, transform_path

try:  # optional: only needed when a drawing has a visible stroke
    import pathops
except ImportError:  # pragma: no cover - depends on the install
    pathops = None

WORK_FRAME = 256.0  # the icon's frame is scaled to this many units before stroking
CONIC_TOLERANCE = 1.0  # working-frame units
MAX_SIMPLIFY_VERBS = 4_000  # larger outlines skip the (superlinear) overlap removal
MAX_DASHES = 10_000  # dashes in one stroked element; tiny dash arrays would explode the outline
MAX_WIDTH_FRAMES = 100.0  # stroke width (in frame units) at most this many frames
MAX_OUTLINE_SEGMENTS = 20_000  # segments in one stroke's outline (parse.MAX_SEGMENTS for a drawing)

CAPS = ("butt", "round", "square")
JOINS = ("miter", "round", "bevel")


@dataclass(frozen=True)
class StrokeStyle:
    """A resolved SVG stroke: width in user units, cap, join, miter limit, dash pattern."""

    width: float
    cap: str = "butt"
    join: str = "miter"
    miter_limit: float = 4.0
    dashes: tuple[float, ...] = ()
    dash_offset: float = 0.0


def parse_dasharray(value: str | None, parse_number) -> tuple[float, ...]:
    """``stroke-dasharray`` as lengths (``()`` for solid). Odd lists repeat (SVG); all-zero is solid."""
    if value is None or value.strip().lower() in ("", "none"):
        return ()
    parts = [p for p in value.replace(",", " ").split() if p]
    dashes = [parse_number(p) for p in parts]
    if any(d < 0 for d in dashes):
        raise SVGError(f"stroke-dasharray {value[:40]!r} has a negative length", "malformed")
    if not any(d > 0 for d in dashes):
        return ()  # SVG: a sum of zero renders as a solid stroke
    if len(dashes) % 2:
        dashes = dashes * 2
    return tuple(dashes)


def _polygon_length(path: Path) -> float:
    """An upper bound of the path's length (control polygons are never shorter than curves)."""
    total = 0.0
    for start, segs in path:
        cur = start
        for seg in segs:
            for p in seg:
                total += math.hypot(p[0] - cur[0], p[1] - cur[1])
                cur = p
    return total


def _ctm_scale(ctm: Affine) -> float:
    a, b, c, d, _, _ = ctm
    return math.sqrt(abs(a * d - b * c))


def outline(path: Path, closed: list[bool], style: StrokeStyle, ctm: Affine, size: float) -> Path:
    """The filled outline of ``path`` (user space, ``closed[i]`` per subpath) stroked with ``style``,
    mapped through ``ctm`` into the ``size`` frame. Raises :class:`SVGError`."""
    if pathops is None:
        raise SVGError("outlining strokes needs skia-pathops: pip install 'argen[icons]'", "stroke")
    if not (math.isfinite(style.width) and style.width > 0):
        return []
    k = _ctm_scale(ctm)
    if not (k > 0 and math.isfinite(k)):
        return []  # a degenerate transform flattens the stroke to no area
    if style.width * k > MAX_WIDTH_FRAMES * size:
        raise SVGError(f"stroke-width {style.width:g} is over {MAX_WIDTH_FRAMES:g} times the icon's "
                       "size", "limit")
    if style.dashes:
        period = sum(style.dashes)
        n = _polygon_length(path) / period * len(style.dashes) if period > 0 else math.inf
        if n > MAX_DASHES:
            raise SVGError(f"stroke-dasharray {style.dashes[:4]} would cut the stroke into more than "
                           f"{MAX_DASHES} dashes", "limit")
    s = WORK_FRAME / size * k  # user units -> working frame (uniform, so widths scale with it)
    work = transform_path(scale(s, s), path)
    skp = pathops.Path()
    pen = skp.getPen()
    for (start, segs), is_closed in zip(work, closed):
        pen.moveTo(start)
        for seg in segs:
            if len(seg) == 1:
                pen.lineTo(seg[0])
            else:
                pen.curveTo(*seg)
        if is_closed:
            pen.closePath()
        else:
            pen.endPath()
    cap = {"butt": pathops.LineCap.BUTT_CAP, "round": pathops.LineCap.ROUND_CAP,
           "square": pathops.LineCap.SQUARE_CAP}[style.cap]
    join = {"miter": pathops.LineJoin.MITER_JOIN, "round": pathops.LineJoin.ROUND_JOIN,
            "bevel": pathops.LineJoin.BEVEL_JOIN}[style.join]
    dashes = [d * s for d in style.dashes] or None
    skp.stroke(style.width * s, cap, join, max(style.miter_limit, 1.0), dash_array=dashes,
               dash_offset=style.dash_offset * s)
    verbs = sum(1 for _ in skp.verbs)
    if verbs > MAX_OUTLINE_SEGMENTS:
        raise SVGError(f"a stroke's outline has more than {MAX_OUTLINE_SEGMENTS} segments", "limit")
    skp.convertConicsToQuads(CONIC_TOLERANCE)
    if verbs <= MAX_SIMPLIFY_VERBS:
        try:
            skp.simplify(fix_winding=True)
        except pathops.PathOpsError:
            pass  # Skia could not resolve the overlaps: the unsimplified outline fills the same area
    out = _from_skia(skp)
    return transform_path(compose(ctm, scale(1 / s, 1 / s)), out)


def _from_skia(skp) -> Path:
    out: Path = []
    segs: list = []
    cur: Point = (0.0, 0.0)
    count = 0
    for verb, pts in skp:
        name = verb.name
        if name == "MOVE":
            segs = []
            cur = tuple(pts[0])
            out.append((cur, segs))
            continue
        if name == "CLOSE":
            continue
        count += 1
        if count > MAX_OUTLINE_SEGMENTS:
            raise SVGError(f"a stroke's outline has more than {MAX_OUTLINE_SEGMENTS} segments", "limit")
        if name == "LINE":
            seg = (tuple(pts[0]),)
        elif name == "QUAD":
            seg = quad_to_cubic(cur, tuple(pts[0]), tuple(pts[1]))
        elif name == "CUBIC":
            seg = (tuple(pts[0]), tuple(pts[1]), tuple(pts[2]))
        else:  # pragma: no cover - conics were converted above
            raise SVGError(f"unexpected {name} verb in a stroke outline", "stroke")
        if seg[-1] != cur or len(seg) > 1:
            segs.append(seg)
        cur = seg[-1]
    return [sub for sub in out if sub[1]]
