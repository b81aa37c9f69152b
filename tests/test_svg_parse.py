"""Normalization of real-world SVG to filled absolute M/L/C paths.

The reference is resvg rendering the *original* SVG (it implements transforms, shapes, arcs,
`use`, fill rules): each case must render the same after normalization.
"""

import math
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from argen.svg import SVGError, normalize, normalize_paths
from argen.svg.geometry import arc_to_cubics
from argen.svg.metrics import raster_coverage, raster_iou
from argen.svg.pathdata import parse_path_data

NS = 'xmlns="http://www.w3.org/2000/svg"'


def svg(body: str, vb: str = "0 0 24 24", extra: str = "") -> str:
    return f'<svg {NS} viewBox="{vb}" {extra}>{body}</svg>'


def assert_same_render(original: str, min_iou: float = 0.99) -> str:
    out = normalize(original, 200)
    iou = raster_iou(original, out, 64, soft=True)
    assert iou >= min_iou, f"soft IoU {iou:.4f}\n{original}\n{out}"
    assert raster_iou(original, out, 64) >= min_iou - 0.02
    return out


CASES = {
    "transform_list": svg('<rect x="2" y="2" width="8" height="5" '
                          'transform="translate(3,1) rotate(20 6 4) scale(1.2 0.9)"/>'),
    "matrix_and_skews": svg('<g transform="matrix(1 0.2 -0.1 1 2 1)"><path d="M2 2h8v8h-8z" '
                            'transform="skewX(15) skewY(-10)"/></g>'),
    "nested_groups": svg('<g transform="translate(12 12)"><g transform="rotate(45)"><g transform="scale(0.5)">'
                         '<rect x="-10" y="-10" width="20" height="20"/></g></g></g>'),
    "non_square_offset_viewbox": svg('<circle cx="15" cy="10" r="9"/><rect x="30" y="4" width="14" height="12"/>',
                                     vb="5 0 40 20"),
    "width_height_only": '<svg xmlns="http://www.w3.org/2000/svg" width="48px" height="32">'
                         '<ellipse cx="24" cy="16" rx="20" ry="10"/></svg>',
    "rounded_rects": svg('<rect x="1" y="1" width="10" height="8" rx="3"/>'
                         '<rect x="13" y="1" width="10" height="8" rx="2" ry="4"/>'
                         '<rect x="1" y="12" width="10" height="10" rx="9"/>'),
    "circle_ellipse_polys": svg('<circle cx="6" cy="6" r="4"/><ellipse cx="17" cy="6" rx="5" ry="3"/>'
                                '<polygon points="2,22 6,14 10,22"/><polyline points="13 14 22 14 22 22"/>'),
    "relative_hv": svg('<path d="m2 2 h6 v3 h-3 v6 h-3 z m10 0 l5 0 l0 5 l-5 0 z"/>'),
    "smooth_cubic": svg('<path d="M2 12 C2 4 8 4 8 12 S14 20 14 12 s6 -8 8 0 L22 22 L2 22 Z"/>'),
    "quadratic_and_smooth": svg('<path d="M2 12 Q7 2 12 12 T22 12 L22 22 L2 22 Z"/>'
                                '<path d="m2 4 q3 -3 6 0 t6 0 t6 0 v1 h-18 z"/>'),
    "arcs": svg('<path d="M4 12 A8 8 0 0 1 20 12 A8 4 30 1 0 4 12 Z"/>'
                '<path d="m2 2 a2 3 0 1 1 4 0 z"/>'),
    "arc_compact_flags": svg('<path d="M4 12a4 4 0 014-4 4 4 0 114 4H4z"/>'),
    "arc_radii_too_small": svg('<path d="M2 12 A1 1 0 0 1 22 12 Z"/>'),
    "implicit_lineto_and_after_z": svg('<path d="M2 2 10 2 10 10Z L 2 20 10 20 Z"/>'),
    "use_and_defs": svg('<defs><path id="tri" d="M0 0L6 0L3 5Z"/></defs>'
                        '<use href="#tri" x="2" y="2"/><use xlink:href="#tri" x="12" y="2" transform="scale(1 1.5)" '
                        'xmlns:xlink="http://www.w3.org/1999/xlink"/>'),
    "use_symbol_viewbox": svg('<symbol id="s" viewBox="0 0 10 10"><circle cx="5" cy="5" r="5"/></symbol>'
                              '<use href="#s" x="2" y="2" width="8" height="8"/>'
                              '<use href="#s" x="12" y="12" width="10" height="5"/>'
                              '<use href="#s" x="14" y="0" width="6"/>'),
    "nested_svg": svg('<svg x="4" y="4" width="16" height="8" viewBox="0 0 4 4"><rect width="4" height="4"/>'
                      '</svg><rect x="0" y="20" width="24" height="2"/>'
                      '<svg x="50%" y="12" height="6"><rect width="50%" height="100%"/></svg>'),
    "evenodd_holes": svg('<path fill-rule="evenodd" d="M2 2H22V22H2Z M6 6H18V18H6Z M9 9H15V15H9Z"/>'),
    "evenodd_via_style_and_inherit": svg('<g style="fill-rule: evenodd"><circle cx="0" cy="0" r="0"/>'
                                         '<path d="M12 2A10 10 0 1 1 11.99 2Z M12 6A6 6 0 1 1 11.99 6Z"/></g>'),
    "nonzero_hole_by_orientation": svg('<path d="M2 2H22V22H2Z M6 6V18H18V6Z"/>'),
    "fill_none_and_hidden": svg('<rect width="24" height="24" fill="none"/><rect width="24" height="24" '
                                'style="display:none"/><g visibility="hidden"><rect width="24" height="24"/></g>'
                                '<rect width="24" height="24" fill-opacity="0"/><rect x="4" y="4" width="6" '
                                'height="6"/>'),
    "percent_and_px": svg('<rect x="10%" y="25%" width="50%" height="2px"/><circle cx="18" cy="18" r="10%"/>'),
    "editor_namespaces": svg('<metadata><x/></metadata><title>t</title><sodipodi:namedview '
                             'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"/>'
                             '<path d="M2 2h20v20z"/>'),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_normalized_renders_like_original(name):
    out = assert_same_render(CASES[name])
    for d in re.findall(r' d="([^"]*)"', out):
        assert set(re.sub(r"[\d.\s-]", "", d)) <= set("MLCZ"), d
    assert 'viewBox="0 0 200 200"' in out


def test_holes_stay_holes_after_evenodd_reorientation():
    out = normalize(CASES["evenodd_holes"], 200)
    # under the default nonzero rule of the output, the ring between 6 and 9 is empty, the centre full
    from argen.svg.metrics import raster_mask
    m = raster_mask(out, 24)
    assert m[3, 3] and not m[7, 7] and m[12, 12]


def test_quadratic_elevation_is_exact():
    [(start, segs)] = parse_path_data("M0 0 Q3 6 6 0")
    assert start == (0.0, 0.0)
    (c1, c2, p), = segs
    assert c1 == pytest.approx((2.0, 4.0)) and c2 == pytest.approx((4.0, 4.0)) and p == (6.0, 0.0)
    [(_, segs)] = parse_path_data("M0 0 Q3 6 6 0 T12 0")  # reflected control (9, -6)
    assert segs[1][0] == pytest.approx((6 + 2 / 3 * 3, -4.0)) and segs[1][1] == pytest.approx((10.0, -4.0))


@pytest.mark.parametrize("rx,ry,phi,large,sweep", [(5, 5, 0, 0, 1), (8, 3, 30, 1, 0), (4, 9, -70, 1, 1)])
def test_arcs_as_cubics_stay_on_the_ellipse(rx, ry, phi, large, sweep):
    p0, p1 = (0.0, 0.0), (6.0, 2.0)
    segs = arc_to_cubics(p0, rx, ry, phi, bool(large), bool(sweep), p1)
    assert segs[-1][-1] == p1 and 1 <= len(segs) <= 4
    # recover the centre from the first cubic's start and check every sampled point's radius
    c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    pts, cur = [], p0
    for c1, c2, p in segs:
        for t in [i / 8 for i in range(9)]:
            u = 1 - t
            pts.append(tuple(u ** 3 * a + 3 * u * u * t * b + 3 * u * t * t * d + t ** 3 * e
                             for a, b, d, e in zip(cur, c1, c2, p)))
        cur = p
    # radii may have been scaled up (out-of-range rule): fit the scale from the endpoint spread
    import numpy as np
    P = np.array(pts)
    local = np.stack([c * P[:, 0] + s * P[:, 1], -s * P[:, 0] + c * P[:, 1]], 1) / [rx, ry]
    # points on a circle in `local`: fit centre and radius by least squares
    A = np.c_[2 * local, np.ones(len(local))]
    sol = np.linalg.lstsq(A, (local ** 2).sum(1), rcond=None)[0]
    r = np.sqrt(sol[2] + sol[0] ** 2 + sol[1] ** 2)
    err = np.abs(np.hypot(*(local - sol[:2]).T) - r).max() / r
    assert err < 3e-4


def test_strokes_are_outlined_and_inherited():
    # a stroked path becomes a filled outline (tests/test_svg_stroke.py checks it against resvg)
    assert len(normalize_paths(svg('<path d="M2 2L20 20" fill="none" stroke="black" stroke-width="2"/>'), 200)) == 1
    # inherited stroke (Feather/Lucide style)
    assert len(normalize_paths(svg('<circle cx="12" cy="12" r="5"/>', extra='stroke="currentColor" fill="none"'),
                               200)) == 1
    # invisible strokes add nothing
    assert len(normalize_paths(svg('<rect width="4" height="4" stroke="red" stroke-width="0"/>'
                                   '<rect width="4" height="4" stroke="none"/>'), 200)) == 2


@pytest.mark.parametrize("body,match", [
    ('<text x="1" y="10">hi</text>', "not supported"),
    ('<image href="x.png" width="5" height="5"/>', "not supported"),
    ('<polygon points="1 2 3"/>', "odd number"),
    ('<path d="L1 1 2 2"/>', "moveto"),
    ('<path d="M1 1 A2 2 0 2 0 4 4"/>', "arc flag"),
    ('<path d="M1 1 L2"/>', "expects 2"),
    ('<rect width="-1" height="3"/>', "negative"),
    ('<rect width="2em" height="3"/>', "invalid length"),
    ('<rect width="2" height="2" transform="rotate(1 2)"/>', "arguments"),
    ('<use href="other.svg#x"/>', "same-document"),
    ('<use href="#nope"/>', "missing id"),
])
def test_bad_or_unsupported_content_raises_svgerror(body, match):
    with pytest.raises(SVGError, match=match):
        normalize_paths(svg(body), 200)


def test_frame_maps_viewbox_onto_full_square_centred():
    [[(start, segs)]] = normalize_paths(svg('<rect x="0" y="0" width="40" height="20"/>', vb="0 0 40 20"), 100)
    xs = [start[0]] + [s[-1][0] for s in segs]
    ys = [start[1]] + [s[-1][1] for s in segs]
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((0, 100, 25, 75))


def test_absolute_units_convert_at_96_dpi():
    from argen.svg.parse import parse_length
    assert parse_length("3pt", "h", 0) == pytest.approx(4.0)
    assert parse_length("1in", "h", 0) == pytest.approx(96.0)
    assert parse_length("25.4mm", "h", 0) == pytest.approx(96.0)
    assert parse_length("50%", "w", 30) == pytest.approx(15.0)


def test_no_viewbox_and_no_size_is_an_error():
    with pytest.raises(SVGError, match="no viewBox"):
        normalize_paths(f'<svg {NS}><rect width="2" height="2"/></svg>', 200)


_CMDS = st.sampled_from(["l", "h", "v", "c", "s", "q", "t", "a", "L", "C", "Q", "A"])
_NUMS = st.integers(min_value=2, max_value=22)
_REL = st.integers(min_value=-5, max_value=5)


@st.composite
def random_paths(draw):
    parts = [f"M{draw(_NUMS)} {draw(_NUMS)}"]
    for _ in range(draw(st.integers(2, 7))):
        c = draw(_CMDS)
        n = {"l": 2, "h": 1, "v": 1, "c": 6, "s": 4, "q": 4, "t": 2, "L": 2, "C": 6, "Q": 4}
        if c in "aA":
            end = (_REL if c == "a" else _NUMS)
            parts.append(f"{c}{draw(st.integers(1, 8))} {draw(st.integers(1, 8))} {draw(st.integers(0, 90))} "
                         f"{draw(st.integers(0, 1))} {draw(st.integers(0, 1))} {draw(end)} {draw(end)}")
        else:
            pool = _REL if c.islower() else _NUMS
            parts.append(c + " ".join(str(draw(pool)) for _ in range(n[c])))
    return " ".join(parts) + ("z" if draw(st.booleans()) else "")


@settings(max_examples=40, deadline=None)
@given(d=random_paths(), rule=st.sampled_from(["nonzero", "evenodd"]))
def test_random_paths_render_like_the_original(d, rule):
    # random paths self-intersect, where evenodd re-orientation is only approximate: check nonzero
    # exactly and evenodd only for "does not crash, stays valid"
    original = svg(f'<path fill-rule="{rule}" d="{d}"/>', vb="-10 -10 44 44")
    if rule == "nonzero":
        # a sliver of a few pixels (e.g. "M2 2 h0 q0 1 1 0") is all grid rounding: IoU says nothing there
        assume(raster_coverage(original, 64).sum() >= 30)
        assert_same_render(original, 0.98)
    else:
        normalize_paths(original, 200)
