"""Export bundles: the only thing a user loads to sample.

A bundle is a folder holding ``config.json`` (what to build, plus ``argen_kind``) and
``model.safetensors`` (weights). Sub-bundles (e.g. the image tokenizer inside a generator) are
sub-folders. Nothing here unpickles: safetensors and JSON only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def save_bundle(directory: str | Path, kind: str, config: dict, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write ``config`` and ``state_dict`` to ``directory`` as a bundle of the given kind."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage and non-contiguous views; clone to plain tensors.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, str(directory / WEIGHTS))
    (directory / CONFIG).write_text(json.dumps({"argen_kind": kind, **config}, indent=2) + "\n")
    return directory


def read_config(directory: str | Path, kind: str | None = None) -> dict:
    """Read a bundle's config, checking that it is a bundle and (optionally) of the expected kind."""
    directory = Path(directory)
    path = directory / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not an argen export bundle: {CONFIG} is missing")
    config = json.loads(path.read_text())
    found = config.get("argen_kind")
    if kind is not None and found != kind:
        raise ValueError(f"{directory} holds an export of kind {found!r}, expected {kind!r}")
    return config


def load_bundle(directory: str | Path, kind: str | None = None,
                device: str | torch.device = "cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    """Return ``(config, state_dict)`` of a bundle written by :func:`save_bundle`."""
    config = read_config(directory, kind)
    weights = Path(directory) / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} is not a complete argen export bundle: {WEIGHTS} is missing")
    return config, load_file(str(weights), device=str(device))
