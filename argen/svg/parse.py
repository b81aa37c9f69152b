"""Safe parsing of untrusted SVG and normalization to filled absolute M/L/C paths.

Two steps, both bounded:

1. :func:`parse_xml` reads the text with ``defusedxml`` (DTDs, entities and external references
   refused, so billion-laughs and XXE cannot expand) under limits on size, depth and element count.
2. :func:`normalize_paths` walks the tree the way a renderer would (inherited styles, nested
   transforms, ``use``, nested ``svg``, basic shapes) and returns each filled element, and each
   stroke outlined by :mod:`argen.svg.stroke`, as a :data:`~argen.svg.geometry.Path` in a
   ``size × size`` frame: the viewBox mapped onto the full square, aspect kept, centred, no margin.

What is dropped or refused (see docs/svg.md): colours and opacity (all fills become black), CSS
from ``<style>`` sheets, clipping and masks (ignored); non-scaling strokes, ``text``, ``image`` and
``foreignObject`` (refused with :class:`SVGError`, reason ``"stroke"`` / ``"unsupported"``).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from argen.svg.errors import SVGError
from argen.svg.geometry import (
    IDENTITY,
    Affine,
    Path,
    Segment,
    arc_to_cubics,
    compose,
    orient_evenodd,
    transform_path,
    translate,
    viewbox_transform,
)
from argen.svg.pathdata import NUMBER, parse_path_data_closed
from argen.svg.stroke import CAPS, JOINS, StrokeStyle, outline, parse_dasharray

MAX_SVG_CHARS = 1 << 20  # 1 MiB of text; icons are a few KiB
MAX_DEPTH = 64  # element nesting (XML depth, and <use> chains on top of it)
MAX_ELEMENTS = 10_000  # elements in the document; icons have tens
MAX_VISITS = 20_000  # elements walked, counting every <use> expansion
MAX_SEGMENTS = 20_000  # segments in the normalized drawing (512 tokens hold < 256)
MAX_EVENODD_SUBPATHS = 1_000  # subpaths in one evenodd path (re-orientation is quadratic)

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"

# Not rendered directly (or referenced only through <use>): skipped silently.
_SKIPPED = {"defs", "symbol", "title", "desc", "metadata", "style", "script", "clipPath", "mask",
            "marker", "pattern", "linearGradient", "radialGradient", "filter", "font", "font-face",
            "animate", "animateMotion", "animateTransform", "set", "view", "cursor", "stop"}
# Rendered content we cannot express as filled paths: the sample is refused.
_UNSUPPORTED = {"text", "image", "foreignObject", "switch", "textPath", "tspan", "video", "audio",
                "canvas", "iframe"}
_SHAPES = {"path", "rect", "circle", "ellipse", "line", "polyline", "polygon"}
_CONTAINERS = {"g", "a"}
_INHERITED = ("fill", "fill-rule", "fill-opacity", "stroke", "stroke-width", "stroke-opacity",
              "stroke-linecap", "stroke-linejoin", "stroke-miterlimit", "stroke-dasharray",
              "stroke-dashoffset", "visibility")
_PRESENTATION = set(_INHERITED) | {"display", "opacity", "transform", "vector-effect"}
_UNITS = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4,
          "q": 96 / 101.6}
_LENGTH = re.compile(rf"\s*({NUMBER})\s*(px|pt|pc|in|cm|mm|q|%)?\s*", re.IGNORECASE)
_NUM = re.compile(NUMBER)
_TRANSFORM = re.compile(r"\s*,?\s*(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)\s*")


# -- XML -----------------------------------------------------------------------------------------

class _LimitedBuilder(ET.TreeBuilder):
    """Tree builder that stops as soon as the document is too deep or has too many elements."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.count = 0

    def start(self, tag, attrs):
        self.depth += 1
        self.count += 1
        if self.depth > MAX_DEPTH:
            raise SVGError(f"elements nested deeper than {MAX_DEPTH} levels", "limit")
        if self.count > MAX_ELEMENTS:
            raise SVGError(f"more than {MAX_ELEMENTS} elements", "limit")
        return super().start(tag, attrs)

    def end(self, tag):
        self.depth -= 1
        return super().end(tag)


def parse_xml(svg: str) -> ET.Element:
    """Parse SVG text safely and return the root ``<svg>`` element.

    DTDs are refused outright: SVG needs none, and refusing them blocks entity expansion
    (billion laughs) and external entities before any expansion happens.
    """
    if isinstance(svg, (bytes, bytearray)):
        if len(svg) > MAX_SVG_CHARS:
            raise SVGError(f"SVG is {len(svg)} bytes, over the {MAX_SVG_CHARS} limit", "limit")
        try:
            svg = bytes(svg).decode("utf-8")
        except UnicodeDecodeError as e:
            raise SVGError(f"SVG bytes are not UTF-8: {e}", "malformed") from None
    if not isinstance(svg, str):
        raise SVGError(f"expected SVG text (str), got {type(svg).__name__}", "malformed")
    if len(svg) > MAX_SVG_CHARS:
        raise SVGError(f"SVG is {len(svg)} characters, over the {MAX_SVG_CHARS} limit", "limit")
    parser = DefusedXMLParser(target=_LimitedBuilder(), forbid_dtd=True, forbid_entities=True,
                              forbid_external=True)
    try:
        parser.feed(svg)
        root = parser.close()
    except SVGError:
        raise
    except DefusedXmlException as e:
        raise SVGError(f"refused XML construct ({type(e).__name__}): DTDs, entities and external "
                       "references are not allowed in SVG input", "hostile") from None
    except (ET.ParseError, ValueError, TypeError, RecursionError) as e:
        raise SVGError(f"not well-formed XML: {e}", "malformed") from None
    if local_name(root.tag) != "svg":
        raise SVGError(f"root element is <{local_name(root.tag)}>, expected <svg>", "malformed")
    return root


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _in_svg_namespace(tag: str) -> bool:
    return isinstance(tag, str) and (not tag.startswith("{") or tag.startswith("{" + SVG_NS + "}"))


# -- attribute values ----------------------------------------------------------------------------

def parse_length(value: str | None, name: str, reference: float, default: float = 0.0) -> float:
    """A length attribute in user units; ``%`` is relative to ``reference``; em/ex are refused."""
    if value is None or value.strip() in ("", "auto"):
        return default
    m = _LENGTH.fullmatch(value)
    if not m:
        raise SVGError(f"invalid length {value[:40]!r} for {name}", "malformed")
    v = float(m.group(1))
    unit = (m.group(2) or "").lower()
    v = v * reference / 100 if unit == "%" else v * _UNITS[unit]
    if not math.isfinite(v):
        raise SVGError(f"non-finite length {value[:40]!r} for {name}", "malformed")
    return v


def parse_numbers(value: str, name: str) -> list[float]:
    """A whitespace/comma separated number list (viewBox, points, transform arguments)."""
    if len(value) > MAX_SVG_CHARS:
        raise SVGError(f"{name} is too long", "limit")
    rest = _NUM.sub(" ", value)
    if rest.replace(",", " ").strip():
        raise SVGError(f"invalid number list {value[:40]!r} for {name}", "malformed")
    out = [float(x) for x in _NUM.findall(value)]
    if not all(math.isfinite(v) for v in out):
        raise SVGError(f"non-finite number in {name}", "malformed")
    return out


def parse_transform(value: str | None) -> Affine:
    """An SVG transform list (matrix, translate, scale, rotate, skewX, skewY) as one affine map."""
    if not value or not value.strip():
        return IDENTITY
    m_total = IDENTITY
    pos = 0
    value = value.strip()
    while pos < len(value):
        m = _TRANSFORM.match(value, pos)
        if not m:
            raise SVGError(f"invalid transform {value[:60]!r}", "malformed")
        pos = m.end()
        kind, args = m.group(1), parse_numbers(m.group(2), f"transform {m.group(1)}()")
        n = len(args)
        if kind == "matrix" and n == 6:
            t = tuple(args)
        elif kind == "translate" and n in (1, 2):
            t = translate(args[0], args[1] if n == 2 else 0.0)
        elif kind == "scale" and n in (1, 2):
            t = (args[0], 0.0, 0.0, args[1] if n == 2 else args[0], 0.0, 0.0)
        elif kind == "rotate" and n in (1, 3):
            a = math.radians(args[0])
            c, s = math.cos(a), math.sin(a)
            t = (c, s, -s, c, 0.0, 0.0)
            if n == 3:
                t = compose(translate(args[1], args[2]), compose(t, translate(-args[1], -args[2])))
        elif kind == "skewX" and n == 1:
            t = (1.0, 0.0, math.tan(math.radians(args[0])), 1.0, 0.0, 0.0)
        elif kind == "skewY" and n == 1:
            t = (1.0, math.tan(math.radians(args[0])), 0.0, 1.0, 0.0, 0.0)
        else:
            raise SVGError(f"transform {kind}() takes a different number of arguments than {n}",
                           "malformed")
        m_total = compose(m_total, t)
    if not all(math.isfinite(v) for v in m_total):
        raise SVGError(f"transform {value[:60]!r} is not finite", "malformed")
    return m_total


def _properties(el: ET.Element) -> dict[str, str]:
    """Presentation attributes, overridden by the inline ``style`` declarations (CSS precedence)."""
    props = {k: v.strip() for k, v in el.attrib.items() if k in _PRESENTATION}
    style = el.get("style")
    if style:
        for decl in style.split(";"):
            if ":" in decl:
                k, v = decl.split(":", 1)
                k = k.strip().lower()
                if k in _PRESENTATION and k != "transform":
                    props[k] = v.replace("!important", "").strip()
    return props


def _is_none(paint: str | None) -> bool:
    return paint is not None and paint.strip().lower() in ("none", "transparent")


def _zero(value: str | None) -> bool:
    """True for an opacity that makes paint invisible ("0", "0%", "0.0")."""
    if value is None:
        return False
    try:
        v = value.strip()
        return float(v[:-1]) == 0 if v.endswith("%") else float(v) == 0
    except ValueError:
        return False


def parse_viewbox(value: str) -> tuple[float, float, float, float]:
    nums = parse_numbers(value, "viewBox")
    if len(nums) != 4:
        raise SVGError(f"viewBox {value[:60]!r} needs 4 numbers", "malformed")
    if nums[2] <= 0 or nums[3] <= 0:
        raise SVGError(f"viewBox {value[:60]!r} has zero or negative size", "malformed")
    return (nums[0], nums[1], nums[2], nums[3])


def root_viewbox(root: ET.Element) -> tuple[float, float, float, float]:
    """The root viewBox, or ``0 0 width height`` when only the size is given."""
    vb = root.get("viewBox")
    if vb is not None:
        return parse_viewbox(vb)
    w, h = root.get("width"), root.get("height")
    if w is None or h is None or "%" in w or "%" in h:
        raise SVGError("SVG has no viewBox and no absolute width/height: nothing places the "
                       "drawing", "malformed")
    width, height = parse_length(w, "width", 0.0), parse_length(h, "height", 0.0)
    if not (width > 0 and height > 0):
        raise SVGError(f"SVG width/height {w!r}x{h!r} is zero or negative", "malformed")
    return (0.0, 0.0, width, height)


# -- shapes --------------------------------------------------------------------------------------

_K = 4 / 3 * (math.sqrt(2) - 1)  # quarter-circle cubic handle length


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> Path:
    pts = [(cx + rx, cy), (cx, cy + ry), (cx - rx, cy), (cx, cy - ry), (cx + rx, cy)]
    segs: list[Segment] = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        # tangents at quadrant points are axis-aligned: handle along x at (x0,y0) if it lies on y=cy
        if y0 == cy:
            c1, c2 = (x0, y0 + _K * (y1 - y0)), (x1 + _K * (x0 - x1), y1)
        else:
            c1, c2 = (x0 + _K * (x1 - x0), y0), (x1, y1 + _K * (y0 - y1))
        segs.append((c1, c2, (x1, y1)))
    return [(pts[0], segs)]


def _rect(x: float, y: float, w: float, h: float, rx: float, ry: float) -> Path:
    if rx <= 0 or ry <= 0:
        return [((x, y), [((x + w, y),), ((x + w, y + h),), ((x, y + h),)])]
    corners = [((x + w - rx, y), (x + w, y + ry)), ((x + w, y + h - ry), (x + w - rx, y + h)),
               ((x + rx, y + h), (x, y + h - ry)), ((x, y + ry), (x + rx, y))]
    start = (x + rx, y)
    segs: list[Segment] = []
    cur = start
    for a, b in corners:
        if a != cur:
            segs.append((a,))
        segs.extend(arc_to_cubics(a, rx, ry, 0.0, False, True, b))
        cur = b
    return [(start, segs)]


def _shape(tag: str, el: ET.Element, vw: float, vh: float) -> tuple[Path, list[bool]]:
    """The geometry of a basic shape or path in its own user space, and whether each subpath is
    closed (strokes join closed subpaths' ends and cap open ones)."""
    path = _shape_path(tag, el, vw, vh)
    if tag == "path":
        return path
    closed = tag not in ("line", "polyline")
    return path, [closed] * len(path)


def _shape_path(tag: str, el: ET.Element, vw: float, vh: float):
    diag = math.sqrt((vw * vw + vh * vh) / 2)
    L = lambda name, ref, default=0.0: parse_length(el.get(name), f"<{tag}> {name}", ref, default)  # noqa: E731
    if tag == "path":
        d = el.get("d")
        return parse_path_data_closed(d) if d and d.strip() != "none" else ([], [])
    if tag == "rect":
        x, y, w, h = L("x", vw), L("y", vh), L("width", vw), L("height", vh)
        if w < 0 or h < 0:
            raise SVGError(f"<rect> has negative size {w:g}x{h:g}", "malformed")
        rx_s, ry_s = el.get("rx"), el.get("ry")
        rx = L("rx", vw, -1.0)
        ry = L("ry", vh, -1.0)
        if rx_s is not None and rx < 0 or ry_s is not None and ry < 0:
            raise SVGError("<rect> has a negative corner radius", "malformed")
        rx, ry = (ry if rx < 0 else rx), (rx if ry < 0 else ry)
        rx, ry = min(max(rx, 0.0), w / 2), min(max(ry, 0.0), h / 2)
        return _rect(x, y, w, h, rx, ry) if w > 0 and h > 0 else []
    if tag in ("circle", "ellipse"):
        cx, cy = L("cx", vw), L("cy", vh)
        if tag == "circle":
            rx = ry = L("r", diag)
        else:
            rx, ry = L("rx", vw), L("ry", vh)
        if rx < 0 or ry < 0:
            raise SVGError(f"<{tag}> has a negative radius", "malformed")
        return _ellipse(cx, cy, rx, ry) if rx > 0 and ry > 0 else []
    if tag == "line":  # no area when filled; it shows only when stroked
        x1, y1, x2, y2 = L("x1", vw), L("y1", vh), L("x2", vw), L("y2", vh)
        return [((x1, y1), [((x2, y2),)])] if (x1, y1) != (x2, y2) else []
    nums = parse_numbers(el.get("points", ""), f"<{tag}> points")
    if len(nums) % 2:
        raise SVGError(f"<{tag}> points has an odd number of coordinates", "malformed")
    pts = list(zip(nums[::2], nums[1::2]))
    return [(pts[0], [(p,) for p in pts[1:]])] if len(pts) >= 2 else []


# -- the walk ------------------------------------------------------------------------------------

@dataclass
class _Context:
    root: ET.Element
    ids: dict[str, ET.Element] | None = None
    visits: int = 0
    segments: int = 0
    active_uses: set[str] = field(default_factory=set)
    paths: list[Path] = field(default_factory=list)
    size: float = 1.0
    shapes: dict[tuple, tuple[Path, list[bool]]] = field(default_factory=dict)  # by (element, viewport)

    def lookup(self, ref: str) -> ET.Element:
        if self.ids is None:
            self.ids = {}
            for el in self.root.iter():
                i = el.get("id")
                if i is not None:
                    self.ids.setdefault(i, el)
        if ref not in self.ids:
            raise SVGError(f"<use> refers to missing id {ref!r}", "malformed")
        return self.ids[ref]


def _stroke_style(tag: str, el: ET.Element, style: dict[str, str], viewport: tuple[float, float]
                  ) -> StrokeStyle | None:
    """The element's stroke, resolved (``None`` when nothing visible is stroked)."""
    stroke = style.get("stroke")
    if stroke is None or _is_none(stroke) or _zero(style.get("stroke-opacity")):
        return None
    vw, vh = viewport
    diag = math.sqrt((vw * vw + vh * vh) / 2)
    width = parse_length(style.get("stroke-width", "1"), "stroke-width", diag, 1.0)
    if width < 0:
        raise SVGError(f"{_describe(tag, el)} has a negative stroke-width", "malformed")
    if width == 0:
        return None
    if _properties(el).get("vector-effect", "").strip().lower() == "non-scaling-stroke":
        raise SVGError(f'{_describe(tag, el)} has vector-effect="non-scaling-stroke": its width is in '
                       "viewport units, which the stroke outliner does not model", "stroke")
    cap = style.get("stroke-linecap", "butt").strip().lower()
    join = style.get("stroke-linejoin", "miter").strip().lower()
    join = "miter" if join in ("miter-clip", "arcs") else join  # SVG 2 values; renderers fall back
    if cap not in CAPS:
        raise SVGError(f"invalid stroke-linecap {cap[:20]!r}", "malformed")
    if join not in JOINS:
        raise SVGError(f"invalid stroke-linejoin {join[:20]!r}", "malformed")
    try:
        miter = float(style.get("stroke-miterlimit", "4"))
    except ValueError:
        raise SVGError(f"invalid stroke-miterlimit {style['stroke-miterlimit'][:20]!r}", "malformed") from None
    if not math.isfinite(miter) or miter < 1:
        raise SVGError(f"stroke-miterlimit must be a number >= 1, got {miter!r}", "malformed")
    dashes = parse_dasharray(style.get("stroke-dasharray"),
                             lambda v: parse_length(v, "stroke-dasharray", diag))
    offset = parse_length(style.get("stroke-dashoffset"), "stroke-dashoffset", diag)
    return StrokeStyle(width, cap, join, miter, dashes, offset)


def _describe(tag: str, el: ET.Element) -> str:
    i = el.get("id")
    return f"<{tag} id={i!r}>" if i else f"<{tag}>"


def _walk(el: ET.Element, ctm: Affine, style: dict[str, str], viewport: tuple[float, float],
          depth: int, ctx: _Context) -> None:
    ctx.visits += 1
    if ctx.visits > MAX_VISITS:
        raise SVGError(f"more than {MAX_VISITS} elements to draw (after <use> expansion)", "limit")
    if depth > MAX_DEPTH:
        raise SVGError(f"elements (with <use> references) nested deeper than {MAX_DEPTH}", "limit")
    if not _in_svg_namespace(el.tag):
        return  # editor metadata (inkscape:, sodipodi:, …) draws nothing
    tag = local_name(el.tag)
    if tag in _SKIPPED:
        return
    if tag in _UNSUPPORTED:
        raise SVGError(f"{_describe(tag, el)} elements are not supported (only filled shapes)",
                       "unsupported")
    props = _properties(el)
    if props.get("display", "").lower() == "none" or _zero(props.get("opacity")):
        return
    style = {**style, **{k: v for k, v in props.items() if k in _INHERITED and v != "inherit"}}
    ctm = compose(ctm, parse_transform(el.get("transform")))
    if tag in _CONTAINERS:
        for child in el:
            _walk(child, ctm, style, viewport, depth + 1, ctx)
    elif tag == "svg":
        _nested_viewport(el, ctm, style, viewport, depth, ctx)
    elif tag == "use":
        _use(el, ctm, style, viewport, depth, ctx)
    elif tag in _SHAPES:
        _draw(tag, el, ctm, style, viewport, ctx)
    # other elements (unknown or from newer specs) render nothing, as in browsers


def _nested_viewport(el: ET.Element, ctm: Affine, style: dict[str, str], viewport: tuple[float, float],
                     depth: int, ctx: _Context, width: str | None = None, height: str | None = None) -> None:
    """A nested ``<svg>``, or a ``<symbol>``/``<svg>`` instanced by ``<use>`` (whose width and height
    override the target's): a new viewport, its viewBox fitted and centred."""
    vw, vh = viewport
    x, y = parse_length(el.get("x"), "x", vw), parse_length(el.get("y"), "y", vh)
    w = parse_length(width if width is not None else el.get("width"), "width", vw, vw)
    h = parse_length(height if height is not None else el.get("height"), "height", vh, vh)
    if w <= 0 or h <= 0:
        return
    vb = el.get("viewBox")
    inner, view = IDENTITY, (w, h)
    if vb is not None:
        box = parse_viewbox(vb)
        inner, view = viewbox_transform(box, w, h), (box[2], box[3])
    m = compose(ctm, compose(translate(x, y), inner))
    for child in el:
        _walk(child, m, style, view, depth + 1, ctx)


def _use(el: ET.Element, ctm: Affine, style: dict[str, str], viewport: tuple[float, float],
         depth: int, ctx: _Context) -> None:
    href = el.get("href") or el.get(XLINK_HREF)
    if not href:
        return
    href = href.strip()
    if not href.startswith("#"):
        raise SVGError(f"<use> refers to {href[:60]!r}: only same-document references (#id) are "
                       "allowed", "hostile")
    ref = href[1:]
    if ref in ctx.active_uses:
        raise SVGError(f"<use> reference cycle through id {ref!r}", "malformed")
    target = ctx.lookup(ref)
    vw, vh = viewport
    m = compose(ctm, translate(parse_length(el.get("x"), "<use> x", vw),
                               parse_length(el.get("y"), "<use> y", vh)))
    ctx.active_uses.add(ref)
    try:
        tag = local_name(target.tag)
        if tag in ("symbol", "svg") and _in_svg_namespace(target.tag):
            props = _properties(target)
            if props.get("display", "").lower() == "none":
                return
            inner_style = {**style, **{k: v for k, v in props.items() if k in _INHERITED}}
            _nested_viewport(target, compose(m, parse_transform(target.get("transform"))), inner_style,
                             viewport, depth + 1, ctx, el.get("width"), el.get("height"))
        else:
            _walk(target, m, style, viewport, depth + 1, ctx)
    finally:
        ctx.active_uses.discard(ref)


def _draw(tag: str, el: ET.Element, ctm: Affine, style: dict[str, str],
          viewport: tuple[float, float], ctx: _Context) -> None:
    if style.get("visibility", "visible").lower() in ("hidden", "collapse"):
        return
    stroke = _stroke_style(tag, el, style, viewport)
    fill = tag != "line" and not (_is_none(style.get("fill")) or _zero(style.get("fill-opacity")))
    if not fill and stroke is None:
        return
    key = (id(el), viewport)
    if key not in ctx.shapes:
        path, closed = _shape(tag, el, *viewport)
        keep = [i for i, s in enumerate(path) if s[1]]
        ctx.shapes[key] = ([path[i] for i in keep], [closed[i] for i in keep])
    local, closed = ctx.shapes[key]
    if not local:
        return
    ctx.segments += sum(len(s[1]) for s in local)
    if ctx.segments > MAX_SEGMENTS:
        raise SVGError(f"more than {MAX_SEGMENTS} path segments", "limit")
    if fill:
        _fill(local, ctm, style, ctx)
    if stroke is not None:
        path = outline(local, closed, stroke, ctm, ctx.size)
        ctx.segments += sum(len(s[1]) for s in path)
        if ctx.segments > MAX_SEGMENTS:
            raise SVGError(f"more than {MAX_SEGMENTS} path segments (stroke outlines included)", "limit")
        if path:
            ctx.paths.append(path)


def _fill(local: Path, ctm: Affine, style: dict[str, str], ctx: _Context) -> None:
    path = transform_path(ctm, local)
    if style.get("fill-rule", "nonzero").strip().lower() == "evenodd":
        if len(path) > MAX_EVENODD_SUBPATHS:
            raise SVGError(f"evenodd path with more than {MAX_EVENODD_SUBPATHS} subpaths", "limit")
        path = orient_evenodd(path)
    ctx.paths.append(path)


def normalize_paths(svg: str | ET.Element, size: float) -> list[Path]:
    """Filled outlines of ``svg`` in a ``size × size`` frame, one :data:`Path` per drawn element.

    Each path is to be filled black with the nonzero rule; evenodd paths come back re-oriented so
    that nonzero gives the same holes. Raises :class:`SVGError` for anything bad or unsupported.
    """
    try:
        root = svg if isinstance(svg, ET.Element) else parse_xml(svg)
        vb = root_viewbox(root)
        ctx = _Context(root, size=float(size))
        props = _properties(root)
        if props.get("display", "").lower() == "none" or _zero(props.get("opacity")):
            return []
        style = {"fill": "black", **{k: v for k, v in props.items() if k in _INHERITED}}
        ctm = compose(viewbox_transform(vb, size, size), parse_transform(root.get("transform")))
        for child in root:
            _walk(child, ctm, style, (vb[2], vb[3]), 1, ctx)
    except SVGError:
        raise
    except RecursionError:
        raise SVGError("SVG nests too deeply to walk", "limit") from None
    except (ArithmeticError, ValueError, IndexError, KeyError, TypeError) as e:
        raise SVGError(f"SVG geometry could not be computed: {type(e).__name__}: {e}",
                       "malformed") from None
    return ctx.paths


def _fmt(v: float) -> str:
    s = f"{v:.3f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def path_d(path: Path, fmt=_fmt) -> str:
    """Absolute ``d`` string of M/L/C commands; every subpath closed with Z."""
    out = []
    for start, segs in path:
        out.append(f"M{fmt(start[0])} {fmt(start[1])}")
        for seg in segs:
            pts = " ".join(f"{fmt(x)} {fmt(y)}" for x, y in seg)
            out.append(("L" if len(seg) == 1 else "C") + pts)
        out.append("Z")
    return "".join(out)


def paths_to_svg(paths: list[Path], size: float, fmt=_fmt, transform: str | None = None) -> str:
    """A minimal SVG: ``viewBox="0 0 size size"``, black nonzero fill, one ``<path>`` per path."""
    body = "".join(f'<path d="{path_d(p, fmt)}"/>' for p in paths)
    g = f'<g transform="{transform}">{body}</g>' if transform and body else body
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {fmt(size)} {fmt(size)}" '
            f'fill="black">{g}</svg>')


def normalize(svg: str, size: float = 200) -> str:
    """Normalized SVG text: absolute M/L/C paths in a ``size`` square, un-quantized."""
    return paths_to_svg(normalize_paths(svg, size), size)
