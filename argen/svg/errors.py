"""The one exception type of :mod:`argen.svg`.

Untrusted SVG can fail in many ways (XML, DTDs, numbers, limits, features we do not model). Callers
such as the shard reader only need to know "skip this sample and count why", so every public
function raises :class:`SVGError` with a readable message and a short ``reason`` key.
"""

from __future__ import annotations


class SVGError(ValueError):
    """Bad, unsupported or hostile SVG input. ``reason`` is a short key for counting skips."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason
