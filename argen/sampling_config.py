"""Sampling settings, written once: their defaults, what "off" means, and how they are overridden.

A trained model's export stores its preferred settings (``sampling`` in ``config.json``, from the
training recipe); :class:`SamplingConfig` reads them, and every caller (``Generator.generate``,
``python -m argen.sample``, ``python -m argen.eval prompts``, the Lightning module) overrides only
what it is given. ``None`` turns a filter off wherever a setting is given:

- API: ``generator.generate(prompts, top_k=None)`` samples without top-k whatever the export
  stores; leaving ``top_k`` out keeps the export's.
- CLI: ``--top-k off`` (or ``none``); leaving the flag out keeps the export's.
- YAML: ``sampling: {top_k: null}`` (``off`` means the same: YAML reads a bare ``off`` as false,
  which is taken as off too).

``top_k=0`` stays an error rather than a third spelling of off: it reads as "keep no tokens".

No torch import: the command lines parse their flags with this module before torch loads.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OFF_WORDS = ("off", "none", "null")


class _Unset:
    """The default of an override argument: "not given, keep the stored setting"."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


def _is_off(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, str) and value.strip().lower() in OFF_WORDS)


def _number(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {'an int' if kind is int else 'a number'} or 'off', got {value!r}") from None
    if kind is int and isinstance(value, float) and value != number:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return number


def check_sampling(cfg_scale: float, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """``ValueError`` naming the first sampling setting out of range (``None``: that filter is off)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if cfg_scale < 0:
        raise ValueError(f"cfg_scale must be >= 0, got {cfg_scale}")


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: guidance scale, temperature (0: greedy), top-k and top-p (``None``: off).

    Spellings of "off" (``"off"``, ``"none"``, ``False``) become ``None`` here, so the rest of argen
    sees one meaning.
    """

    cfg_scale: float = 3.0
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise in place once, here
        set_(self, "cfg_scale", _number("cfg_scale", self.cfg_scale, float))
        set_(self, "temperature", _number("temperature", self.temperature, float))
        set_(self, "top_k", None if _is_off(self.top_k) else _number("top_k", self.top_k, int))
        set_(self, "top_p", None if _is_off(self.top_p) else _number("top_p", self.top_p, float))
        check_sampling(self.cfg_scale, self.temperature, self.top_k, self.top_p)

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | SamplingConfig | None) -> SamplingConfig:
        """An export's or a recipe's ``sampling`` mapping (missing keys take the defaults)."""
        if isinstance(settings, SamplingConfig):
            return settings
        settings = dict(settings or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValueError(f"unknown sampling setting(s) {unknown}; valid: {sorted(names)}")
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form an export stores (``null`` for a filter that is off)."""
        return dataclasses.asdict(self)

    def override(self, **changes: Any) -> SamplingConfig:
        """These settings with ``changes`` applied; a change left at :data:`UNSET` keeps the setting."""
        given = {k: v for k, v in changes.items() if v is not UNSET}
        if not given:
            return self
        return SamplingConfig.from_dict({**self.to_dict(), **given})


def off_or_int(text: str) -> int | None:
    """argparse type for ``--top-k``: an int, or ``off``/``none`` for no top-k filter."""
    return None if _is_off(text) else int(text)


def off_or_float(text: str) -> float | None:
    """argparse type for ``--top-p``: a number in (0, 1], or ``off``/``none`` for no top-p filter."""
    return None if _is_off(text) else float(text)


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """``--cfg-scale``, ``--temperature``, ``--top-k``, ``--top-p`` for a command line; each left out
    is :data:`UNSET` (the export's setting), ``--top-k off`` / ``--top-p off`` turn a filter off."""
    p.add_argument("--cfg-scale", type=float, default=UNSET, help="guidance scale; default: the export's")
    p.add_argument("--temperature", type=float, default=UNSET, help="0 is greedy; default: the export's")
    p.add_argument("--top-k", type=off_or_int, default=UNSET, metavar="K|off",
                   help="keep the K most likely tokens; 'off' for no top-k filter; default: the export's")
    p.add_argument("--top-p", type=off_or_float, default=UNSET, metavar="P|off",
                   help="keep the most likely tokens up to mass P; 'off' for no top-p filter; default: the export's")
