"""argen: train and sample autoregressive token-based generators (Parti- and IconShop-style)."""

__version__ = "0.1.0"

_LAZY = {
    "ImageTokenizer": "argen.vqgan",
    "SVGTokenizer": "argen.svg",
    "Generator": "argen.generator",
}


def __getattr__(name):  # PEP 562: keep `import argen` light; heavy parts load on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'argen' has no attribute {name!r}")


__all__ = list(_LAZY)
