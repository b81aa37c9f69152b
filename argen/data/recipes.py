"""Built-in dataset recipes: ``{dataset: shapes|icons, out: DIR, …}`` -> shards (and a text tokenizer).

A recipe names a built-in dataset (:mod:`argen.data.shapes`, :mod:`argen.data.iconcorpus`) and its
options; :func:`prepare_recipe` writes its shards once, even when several ranks start together,
and refuses to reuse a folder that holds another recipe's shards. Kept apart from
:mod:`argen.data.shards` (reading and writing any shards), which the datasets themselves use: the
imports run datasets -> shards, and recipes -> datasets.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from argen.data import iconcorpus, shapes
from argen.data.shards import read_captions
from argen.text import TextTokenizer

RECIPES: dict[str, dict[str, Any]] = {
    "shapes": {"train": 20000, "val": 512, "size": 32, "seed": 0, "per_shard": None},
    "icons": {"sources": "all", "common": 0, "format": "svg", "size": 256, "per_shard": None},
}
DATASETS = {"shapes": shapes.prepare, "icons": iconcorpus.prepare}
DEFAULT_VOCAB = {"shapes": 128, "icons": 1000}  # text tokenizer sizes when a recipe gives none
MARKER = "prepare.json"


def normalize_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check a ``{dataset: …, out: …, …}`` recipe and fill in its defaults (``vocab_size`` passes through)."""
    recipe = dict(recipe)
    name = recipe.pop("dataset", None)
    if name not in RECIPES:
        raise ValueError(f"prepare recipe needs dataset: one of {sorted(RECIPES)}, got {name!r}")
    out = recipe.pop("out", None)
    if not out:
        raise ValueError(f"prepare recipe for {name!r} needs out: the folder to write shards to")
    vocab = recipe.pop("vocab_size", None)
    unknown = set(recipe) - set(RECIPES[name])
    if unknown:
        raise ValueError(f"prepare recipe for {name!r}: unknown keys {sorted(unknown)}; "
                         f"allowed: dataset, out, vocab_size, {', '.join(RECIPES[name])}")
    full = {"dataset": name, "out": str(out), **RECIPES[name], **recipe}
    if vocab is not None:
        full["vocab_size"] = int(vocab)
    return full


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on ``folder`` so that ranks started together prepare data only once."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare_recipe(recipe: dict[str, Any], progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Write a built-in dataset's shards unless ``out`` already holds this recipe's shards.

    ``out/prepare.json`` records a finished recipe; a different recipe in the same folder is an
    error rather than a silent reuse of the wrong data. Where the folder lives is not part of the
    recipe: a prepared folder that was moved or copied is still recognised.
    """
    recipe = normalize_recipe(recipe)
    shard_recipe = {k: v for k, v in recipe.items() if k != "vocab_size"}
    out = Path(recipe["out"])
    with folder_lock(out):
        marker = out / MARKER
        if marker.is_file() and not force:
            done = json.loads(marker.read_text())
            if _without_out(done) == _without_out(shard_recipe):
                return recipe
            raise ValueError(f"{out} already holds shards of another recipe {done}, not {shard_recipe}; "
                             "delete the folder, choose another out, or pass --force")
        marker.unlink(missing_ok=True)
        options = {k: v for k, v in shard_recipe.items() if k not in ("dataset", "out")}
        DATASETS[recipe["dataset"]](out, progress=progress, **options)
        marker.write_text(json.dumps(shard_recipe, indent=2) + "\n")
    return recipe


def _without_out(recipe: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in recipe.items() if k != "out"}


def tokenizer_for(shards: str | Sequence[str], vocab_size: int, out: str | Path, progress: bool = True):
    """Train a text tokenizer on the shards' captions and save it to ``out``."""
    tok = TextTokenizer.train(read_captions(shards, progress), vocab_size, show_progress=progress)
    tok.save(out)
    return tok
