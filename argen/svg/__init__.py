"""SVG target: safe parsing, normalization to M/L/C paths, the IconShop tokenizer, rasterizing.

``rasterize`` and ``metrics`` import resvg-py on first use; the rest needs only defusedxml.
"""

from argen.svg.errors import SVGError
from argen.svg.parse import normalize, normalize_paths, parse_xml
from argen.svg.tokenizer import SVGTokenizer

__all__ = ["SVGError", "SVGTokenizer", "normalize", "normalize_paths", "parse_xml"]
