"""Evaluation: metrics a researcher trusts, reports a person can read.

``python -m argen.eval {tokenizer,shapes,svg,prompts} …`` writes ``OUT/metrics.json``,
``OUT/report.md`` and PNG grids (and an offline W&B run with ``--wandb``). From Python:
:func:`evaluate_tokenizer`, :func:`evaluate_shapes`, :func:`evaluate_svg`, :func:`evaluate_prompts`;
FID/KID with :class:`FID` and :func:`fid_kid`. See ``docs/eval.md``.
"""

from __future__ import annotations

from pathlib import Path

_LAZY = {
    "FID": "argen.eval.fid",
    "fid_kid": "argen.eval.fid",
    "feature_extractor": "argen.eval.fid",
    "RandConvFeatures": "argen.eval.fid",
    "Report": "argen.eval.report",
    "read_prompts": "argen.eval.prompts",
    "evaluate_prompts": "argen.eval.prompts",
    "evaluate_tokenizer": "argen.eval.tokenizer",
    "evaluate_shapes": "argen.eval.shapes",
    "evaluate_svg": "argen.eval.svg",
}

SUBCOMMAND_FOR = {"image_tokenizer": "shapes", "svg_tokenizer": "svg"}


def check_generator(export: str | Path, target_kind: str, subcommand: str) -> dict:
    """The export's config, after checking it is a generator writing ``target_kind`` tokens."""
    from argen.export import read_config  # function-level: `python -m argen.eval --help` loads no torch

    try:
        config = read_config(export, "generator")
    except ValueError as e:
        tokenizer = "image_tokenizer" in str(e)
        hint = " (an image tokenizer export: use `python -m argen.eval tokenizer`)" if tokenizer else ""
        raise ValueError(f"`argen.eval {subcommand}` needs a generator export: {e}{hint}") from None
    target = read_config(Path(export) / config.get("target", "target")).get("argen_kind")
    if target != target_kind:
        other = f"`python -m argen.eval {SUBCOMMAND_FOR[target]}` or `prompts`" if target in SUBCOMMAND_FOR \
            else "`python -m argen.eval prompts`"
        raise ValueError(f"`argen.eval {subcommand}` needs a generator that writes {target_kind} tokens; "
                         f"{export} writes {target!r} tokens (use {other})")
    return config


def __getattr__(name):  # PEP 562: `python -m argen.eval --help` should not import torch metrics.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'argen.eval' has no attribute {name!r}")


__all__ = [*_LAZY, "check_generator"]
