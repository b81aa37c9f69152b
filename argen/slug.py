"""File-name slugs of prompts and titles, for every file argen names after text."""

from __future__ import annotations

import re


def slug(text: str, max_len: int = 60, empty: str = "grid") -> str:
    """Lower-case ASCII letters and digits joined by ``-``, at most ``max_len`` characters
    (``empty`` when nothing is left, e.g. for the empty prompt)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len] or empty
