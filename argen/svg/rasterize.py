"""Rasterize SVG with resvg (resvg-py wheels, no system libraries).

The text is first parsed by :func:`argen.svg.parse.parse_xml` (size/depth limits, no DTDs), then
re-serialized with the output size set on the root, so every SVG is drawn the same way the
tokenizer frames it: viewBox scaled to fit the square, aspect kept, centred. Elements that could
make resvg read files (``image``, ``feImage``, ``foreignObject``) and ``script`` are removed first.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

from PIL import Image

from argen.svg.errors import SVGError
from argen.svg.parse import SVG_NS, local_name, parse_xml, root_viewbox

MAX_RASTER = 4096
_DROP = {"image", "feImage", "foreignObject", "script"}


def _sanitized(svg: str | ET.Element, size: int) -> str:
    root = parse_xml(svg) if not isinstance(svg, ET.Element) else svg
    vb = root_viewbox(root)
    stack = [root]
    while stack:
        el = stack.pop()
        for child in list(el):
            if local_name(child.tag) in _DROP:
                el.remove(child)
            else:
                stack.append(child)
    root.set("viewBox", " ".join(repr(float(v)) for v in vb))
    root.set("width", str(size))
    root.set("height", str(size))
    root.attrib.pop("preserveAspectRatio", None)
    if not isinstance(root.tag, str) or not root.tag.startswith("{"):
        root.set("xmlns", SVG_NS)
    return ET.tostring(root, encoding="unicode")


def rasterize(svg: str, size: int) -> Image.Image:
    """Render ``svg`` to a ``size × size`` RGB image on white. Raises :class:`SVGError`."""
    if not isinstance(size, int) or not 1 <= size <= MAX_RASTER:
        raise SVGError(f"raster size must be an int in [1, {MAX_RASTER}], got {size!r}", "malformed")
    try:  # function-level: the native rasterizer loads on first use (parsing and tokenizing never need it)
        import resvg_py
    except ImportError as e:  # pragma: no cover - an install problem, not an input problem
        raise ImportError("argen.svg.rasterize needs resvg-py: pip install 'argen[svg]'") from e
    text = _sanitized(svg, size)
    try:
        png = resvg_py.svg_to_bytes(svg_string=text, background="white", skip_system_fonts=True)
        img = Image.open(io.BytesIO(bytes(png)))
        img.load()
    except Exception as e:  # resvg raises plain ValueError/OSError; never let those escape
        raise SVGError(f"resvg could not render the SVG: {e}", "render") from None
    if img.size != (size, size):
        canvas = Image.new("RGB", (size, size), "white")
        canvas.paste(img.convert("RGB"), ((size - img.width) // 2, (size - img.height) // 2))
        return canvas
    return img.convert("RGB")
