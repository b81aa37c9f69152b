"""What an evaluation computes from real data alone, kept on disk between runs.

Real images' FID features, training icons' masks and the emoji probe do not depend on the model
under test, and on a CPU they are most of an evaluation's cost; with them cached, evaluating the
next export pays only for its own samples. Each entry is a safetensors file named by a hash of
everything it depends on (the inputs' content, the extractor, the settings), so a stale entry is
never read. The folder is ``--cache`` (default ``$ARGEN_CACHE``, else ``~/.cache/argen``); an
unwritable folder is skipped, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from argen.eval.fid import FID, to_uint8


def default_dir() -> Path:
    """``$ARGEN_CACHE``, else ``~/.cache/argen``."""
    return Path(os.environ.get("ARGEN_CACHE", Path.home() / ".cache" / "argen"))


class Cache:
    """Safetensors entries in ``folder`` (``None``: :func:`default_dir`; ``False``: keep nothing)."""

    def __init__(self, folder: str | Path | None | bool = None):
        self.folder = None if folder is False else Path(folder) if isinstance(folder, (str, Path)) and folder \
            else default_dir()

    @staticmethod
    def key(*parts: Any) -> str:
        """A short hash of ``parts`` (anything JSON can write, or ``str`` of it)."""
        return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def path(self, name: str, key: str) -> Path | None:
        return self.folder / f"{name}-{key}.safetensors" if self.folder else None

    def load(self, name: str, key: str) -> dict[str, torch.Tensor] | None:
        path = self.path(name, key)
        return load_file(path) if path is not None and path.is_file() else None

    def save(self, name: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        path = self.path(name, key)
        if path is None:
            return
        try:  # written beside, then renamed: a killed run never leaves half an entry
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
            tmp.replace(path)
        except OSError:
            pass

    def get(self, name: str, key: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The entry ``(name, key)``, computed by ``compute()`` and saved when it is not there yet."""
        hit = self.load(name, key)
        if hit is None:
            hit = compute()
            self.save(name, key, hit)
        return hit

    def features(self, fid: FID, images, name: str, progress: bool = False) -> torch.Tensor:
        """``fid.features(images)``, keyed by the extractor and the images' pixels."""
        pixels = to_uint8(images)
        key = self.key(fid.name, list(pixels.shape), hashlib.sha1(pixels.numpy().tobytes()).hexdigest())
        return self.get(name, key, lambda: {"features": fid.features(pixels, progress, f"{name} features")})["features"]
