"""Plain-Python geometry for normalized drawings: affine maps, arcs as cubics, orientation.

A drawing is reduced to three primitives so the tokenizer only ever sees M, L and C:

* ``Point``: ``(x, y)``.
* ``Segment``: ``(p,)`` is a line to ``p``; ``(c1, c2, p)`` is a cubic to ``p``.
* ``Subpath``: ``(start, [segments])``; always filled as if closed (fill closes implicitly).
* ``Path``: a list of subpaths filled together with the nonzero rule.

Affine maps act exactly on Bézier control points, so transforms never approximate anything.
"""

from __future__ import annotations

import math

import numpy as np

from argen.svg.errors import SVGError

Point = tuple[float, float]
Segment = tuple[Point, ...]
Subpath = tuple[Point, list[Segment]]
Path = list[Subpath]
Affine = tuple[float, float, float, float, float, float]  # SVG matrix(a b c d e f)

IDENTITY: Affine = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def compose(m: Affine, n: Affine) -> Affine:
    """``m · n``: apply ``n`` first, then ``m`` (SVG nests transforms this way)."""
    a, b, c, d, e, f = m
    a2, b2, c2, d2, e2, f2 = n
    return (a * a2 + c * b2, b * a2 + d * b2, a * c2 + c * d2, b * c2 + d * d2,
            a * e2 + c * f2 + e, b * e2 + d * f2 + f)


def translate(tx: float, ty: float) -> Affine:
    return (1.0, 0.0, 0.0, 1.0, tx, ty)


def scale(sx: float, sy: float) -> Affine:
    return (sx, 0.0, 0.0, sy, 0.0, 0.0)


def apply(m: Affine, p: Point) -> Point:
    a, b, c, d, e, f = m
    return (a * p[0] + c * p[1] + e, b * p[0] + d * p[1] + f)


def transform_path(m: Affine, path: Path) -> Path:
    """Map every point of ``path`` through ``m`` and check the result is finite."""
    out: Path = []
    for start, segs in path:
        out.append((apply(m, start), [tuple(apply(m, p) for p in seg) for seg in segs]))
    for start, segs in out:
        if not all(math.isfinite(v) for v in start) or not all(
                math.isfinite(v) for seg in segs for p in seg for v in p):
            raise SVGError("coordinates overflow to a non-finite value after transforms", "malformed")
    return out


def viewbox_transform(vb: tuple[float, float, float, float], width: float, height: float) -> Affine:
    """Map viewBox ``(x, y, w, h)`` into a ``width × height`` viewport: aspect kept, centred (meet)."""
    x, y, w, h = vb
    if not (w > 0 and h > 0):
        raise SVGError(f"viewBox {x:g} {y:g} {w:g} {h:g} has zero or negative size", "malformed")
    s = min(width / w, height / h)
    return (s, 0.0, 0.0, s, (width - w * s) / 2 - x * s, (height - h * s) / 2 - y * s)


# -- curves ------------------------------------------------------------------------------------

def quad_to_cubic(p0: Point, q: Point, p2: Point) -> Segment:
    """Exact degree elevation: controls at P0 + ⅔(Q − P0) and P2 + ⅔(Q − P2)."""
    return ((p0[0] + 2 / 3 * (q[0] - p0[0]), p0[1] + 2 / 3 * (q[1] - p0[1])),
            (p2[0] + 2 / 3 * (q[0] - p2[0]), p2[1] + 2 / 3 * (q[1] - p2[1])), p2)


def arc_to_cubics(p0: Point, rx: float, ry: float, phi_deg: float, large: bool, sweep: bool,
                  p1: Point) -> list[Segment]:
    """An SVG elliptical arc as cubics, one per ≤ 90° piece (radial error ≤ 2.7e-4 · radius).

    Follows the endpoint-to-centre conversion of SVG 1.1 appendix F.6, including the
    out-of-range radii rules (zero radius → line, too-small radii scaled up).
    """
    x0, y0 = p0
    x1, y1 = p1
    if (x0, y0) == (x1, y1):
        return []
    rx, ry = abs(rx), abs(ry)
    if rx == 0 or ry == 0:
        return [(p1,)]
    phi = math.radians(phi_deg % 360)
    cos_p, sin_p = math.cos(phi), math.sin(phi)
    dx, dy = (x0 - x1) / 2, (y0 - y1) / 2
    x1p = cos_p * dx + sin_p * dy
    y1p = -sin_p * dx + cos_p * dy
    lam = (x1p / rx) ** 2 + (y1p / ry) ** 2
    if lam > 1:
        rx, ry = rx * math.sqrt(lam), ry * math.sqrt(lam)
    num = rx * rx * ry * ry - rx * rx * y1p * y1p - ry * ry * x1p * x1p
    den = rx * rx * y1p * y1p + ry * ry * x1p * x1p
    coef = math.sqrt(max(0.0, num / den)) if den > 0 else 0.0
    if large == sweep:
        coef = -coef
    cxp, cyp = coef * rx * y1p / ry, -coef * ry * x1p / rx
    cx = cos_p * cxp - sin_p * cyp + (x0 + x1) / 2
    cy = sin_p * cxp + cos_p * cyp + (y0 + y1) / 2

    def angle(ux: float, uy: float, vx: float, vy: float) -> float:
        return math.atan2(ux * vy - uy * vx, ux * vx + uy * vy)

    ux, uy = (x1p - cxp) / rx, (y1p - cyp) / ry
    vx, vy = (-x1p - cxp) / rx, (-y1p - cyp) / ry
    theta = angle(1.0, 0.0, ux, uy)
    delta = angle(ux, uy, vx, vy)
    if not sweep and delta > 0:
        delta -= 2 * math.pi
    elif sweep and delta < 0:
        delta += 2 * math.pi
    if not all(math.isfinite(v) for v in (cx, cy, theta, delta, rx, ry)):
        raise SVGError("arc parameters overflow to a non-finite value", "malformed")
    n = max(1, math.ceil(abs(delta) / (math.pi / 2) - 1e-9))
    step = delta / n
    k = 4 / 3 * math.tan(step / 4)

    def point(t: float) -> tuple[Point, Point]:  # point on the ellipse and its derivative
        ct, st = math.cos(t), math.sin(t)
        ex, ey = rx * ct, ry * st
        tx, ty = -rx * st, ry * ct
        return ((cos_p * ex - sin_p * ey + cx, sin_p * ex + cos_p * ey + cy),
                (cos_p * tx - sin_p * ty, sin_p * tx + cos_p * ty))

    out: list[Segment] = []
    a, da = point(theta)
    for i in range(1, n + 1):
        b, db = point(theta + i * step)
        end = p1 if i == n else b  # land exactly on the requested endpoint
        out.append(((a[0] + k * da[0], a[1] + k * da[1]), (b[0] - k * db[0], b[1] - k * db[1]), end))
        a, da = b, db
    return out


# -- orientation (fill-rule evenodd -> nonzero) ---------------------------------------------------

def reverse_subpath(sub: Subpath) -> Subpath:
    """The same closed outline traversed backwards (its winding sign flips)."""
    start, segs = sub
    if not segs:
        return sub
    points = [start] + [seg[-1] for seg in segs]
    out: list[Segment] = []
    for i in range(len(segs) - 1, -1, -1):
        seg, before = segs[i], points[i]
        out.append((seg[1], seg[0], before) if len(seg) == 3 else (before,))
    return (points[-1], out)


def _polygon(sub: Subpath) -> np.ndarray:
    """A coarse polygon of the outline (cubics sampled at t = ½ and 1), enough for containment."""
    start, segs = sub
    pts = [start]
    for seg in segs:
        if len(seg) == 3:
            p0 = pts[-1]
            c1, c2, p = seg
            pts.append((0.125 * (p0[0] + p[0]) + 0.375 * (c1[0] + c2[0]),
                        0.125 * (p0[1] + p[1]) + 0.375 * (c1[1] + c2[1])))
        pts.append(seg[-1])
    return np.asarray(pts, dtype=np.float64)


def signed_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def orient_evenodd(path: Path) -> Path:
    """Re-orient subpaths so the nonzero rule fills what evenodd filled.

    A subpath nested inside an even number of others winds positively, an odd number negatively;
    windings then sum to 1 inside filled regions and 0 in holes. Exact for non-crossing outlines
    (the usual case for holes); self-intersecting outlines keep their approximate shape.
    """
    if len(path) < 2:
        return path
    polys = [_polygon(s) for s in path]
    # every closed edge of every subpath, with its owner, vectorised for crossing tests
    a = np.concatenate(polys)
    b = np.concatenate([np.roll(p, -1, axis=0) for p in polys])
    owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(polys)])
    lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    dy = np.where(b[:, 1] == a[:, 1], 1.0, b[:, 1] - a[:, 1])
    out: Path = []
    for i, (sub, poly) in enumerate(zip(path, polys)):
        area = signed_area(poly)
        if area == 0:
            out.append(sub)
            continue
        probes = poly[np.linspace(0, len(poly) - 1, num=min(3, len(poly)), dtype=int)]
        inside = np.zeros(len(path))
        for px, py in probes:  # ray to +x: count edge crossings per owner (even-odd test)
            spans = (lo <= py) & (py < hi)
            xs = a[:, 0] + (py - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy
            hits = spans & (xs > px)
            inside += np.bincount(owner, weights=hits, minlength=len(path)) % 2
        inside[i] = 0
        depth = int((inside * 2 > len(probes)).sum())
        want_positive = depth % 2 == 0
        out.append(sub if (area > 0) == want_positive else reverse_subpath(sub))
    return out
