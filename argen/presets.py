"""Named model sizes: the one lookup behind ``config_from_preset`` of both stages.

A preset is a dict of config fields (``argen.vqgan.model.PRESETS``, ``argen.transformer.model.PRESETS``);
overrides replace its fields, and a name or a field that does not exist is an error naming the choices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C")


def config_from_preset(config_cls: type[C], presets: Mapping[str, Mapping[str, Any]], name: str, what: str,
                       **overrides: Any) -> C:
    """``config_cls`` built from preset ``name`` of ``presets`` with ``overrides`` applied."""
    if name not in presets:
        raise ValueError(f"unknown {what} preset {name!r}; choose one of {sorted(presets)}")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown {config_cls.__name__} field(s) {unknown}; valid: {sorted(fields)}")
    return config_cls(**{**presets[name], **overrides})
