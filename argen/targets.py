"""The target-tokenizer contract: what the encoder-decoder writes.

The transformer, the sampler and the training loop see only this interface, so one model writes
image tokens (:class:`argen.vqgan.ImageTarget`) or SVG path tokens (:class:`argen.svg.SVGTokenizer`)
without ever branching on which.

Token ids ``0 .. vocab_size-1`` are the target's own. The decoder adds one more id, ``vocab_size``,
as its begin-of-sequence input; targets never see it except in :meth:`token_features`.

Target kinds register themselves: a subclass that sets ``kind`` (the ``argen_kind`` its bundle's
``config.json`` holds) is entered in :data:`TARGET_KINDS` when its module is imported, and
:func:`load_target` looks the kind up there. This module never imports its subclasses, so the
imports stay a DAG (``argen.vqgan.target`` and ``argen.svg.tokenizer`` import this one);
:mod:`argen.generator`, which loads bundles of either kind, imports both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from argen.export import read_config

TARGET_KINDS: dict[str, type[TargetTokenizer]] = {}


@dataclass
class Grammar:
    """A deterministic finite automaton over target tokens, applied as a logit mask while sampling.

    ``allowed[s, v]``: token ``v`` may follow in state ``s``. ``transition[s, v]``: the state after
    emitting ``v`` in state ``s``. Vectorised so a batch advances with two gathers per step.
    """

    allowed: torch.Tensor  # (S, V) bool
    transition: torch.Tensor  # (S, V) long
    start: int = 0

    def to(self, device: torch.device | str) -> Grammar:
        return Grammar(self.allowed.to(device), self.transition.to(device), self.start)

    def initial(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.full((batch,), self.start, dtype=torch.long, device=device or self.allowed.device)

    def mask(self, state: torch.Tensor) -> torch.Tensor:
        """(B,) states -> (B, V) bool mask of allowed next tokens."""
        return self.allowed[state]

    def step(self, state: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        return self.transition[state, token]

    def accepts(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) token rows -> (B,) bool: every token was allowed where it stands."""
        state = self.initial(tokens.shape[0], tokens.device)
        ok = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        for t in range(tokens.shape[1]):
            ok &= self.mask(state).gather(1, tokens[:, t : t + 1]).squeeze(1)
            state = self.step(state, tokens[:, t])
        return ok


class TargetTokenizer:
    """Base class of target tokenizers. Subclasses set the attributes and implement the methods.

    Attributes:
        vocab_size: number of target token ids the decoder predicts.
        max_len: longest target sequence (exact length for fixed-length targets such as images).
        eos_id: generation of a row stops after this token; ``None`` for fixed-length targets.
        pad_id: id that fills rows after ``eos_id``; ignored by the loss. ``None`` if never padded.
        feature_sizes: sizes of the extra embedding tables the decoder adds to its inputs (e.g. the
            image row and column, or an SVG point's x and y). Empty for none.
        speculative_window: drafts per pass that speculative decoding uses when asked for with
            ``True``. How far Jacobi drafts stay right depends on the token language: image tokens
            lean little on their neighbour, SVG points chain on the one before (BENCHMARKS.md,
            "Speculative decoding", the window sweep).
        draft_corpus_tokens: how many training target tokens (at most) an export keeps for
            speculative decoding to draft from (:mod:`argen.transformer.drafts`); 0 keeps none.
    """

    vocab_size: int
    max_len: int
    eos_id: int | None = None
    pad_id: int | None = None
    feature_sizes: tuple[int, ...] = ()
    speculative_window: int = 10
    draft_corpus_tokens: int = 0
    kind: str = "target"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is not None:  # a concrete kind (not a helper subclass that inherits one)
            if kind in TARGET_KINDS and TARGET_KINDS[kind].__qualname__ != cls.__qualname__:
                raise ValueError(f"target kind {kind!r} is already registered by {TARGET_KINDS[kind]}")
            TARGET_KINDS[kind] = cls

    # -- training ---------------------------------------------------------------------------
    def encode_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """A collated data batch -> (B, L) long tensor of target ids, padded with ``pad_id``.

        Image targets read ``batch["image"]`` (or pre-encoded ``batch["tokens"]``); SVG targets
        read ``batch["svg"]``.
        """
        raise NotImplementedError

    def token_features(self, inputs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Decoder inputs (B, T) (id ``vocab_size`` is BOS) at ``positions`` (T,) -> (B, T, F) long.

        Feature ``f`` indexes an embedding table of ``feature_sizes[f]`` rows; 0 can mean "none".
        """
        return inputs.new_zeros(*inputs.shape, 0)

    def id_features(self) -> torch.Tensor:
        """(vocab_size, F) features of every target id, for a model with ``feature_head``; only a target
        whose features depend on the id alone (not on its position) has them."""
        raise ValueError(f"{type(self).__name__}'s token features depend on position, not on the id alone: "
                         f"it cannot be used with feature_head")

    # -- sampling ---------------------------------------------------------------------------
    def grammar(self) -> Grammar | None:
        """Constraint automaton for sampling, or ``None`` when any token may follow any other."""
        return None

    def decode(self, ids: torch.Tensor) -> Any:
        """One sequence of ids (1-D, as ``encode`` returns them) -> one output (a PIL image, an SVG string, …)."""
        return self.batch_decode(self._one_row(ids).unsqueeze(0))[0]

    def batch_decode(self, ids: torch.Tensor) -> list:
        """(B, L) ids -> one output per row."""
        raise NotImplementedError

    @staticmethod
    def _one_row(ids) -> torch.Tensor:
        ids = torch.as_tensor(ids)
        if ids.dim() != 1:
            raise ValueError(f"decode takes one sequence of ids (1-D), got shape {tuple(ids.shape)}; "
                             "use batch_decode for a (B, L) batch")
        return ids

    # -- export -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write what :func:`load_target` needs to rebuild this target into ``directory``."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> TargetTokenizer:
        """Rebuild the target that :meth:`save_pretrained` wrote to ``directory``, on ``device``."""
        raise NotImplementedError

    def to(self, device: torch.device | str) -> TargetTokenizer:
        return self


def load_target(directory: str | Path, device: str | torch.device = "cpu") -> TargetTokenizer:
    """Rebuild a target tokenizer from the folder its ``save_pretrained`` wrote, on ``device``."""
    kind = read_config(directory).get("argen_kind")
    cls = TARGET_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"{directory}: unknown target kind {kind!r}; registered kinds: {sorted(TARGET_KINDS)} "
                         "(a kind registers when its module is imported: argen.vqgan for image tokenizers, "
                         "argen.svg for SVG; argen.Generator imports both)")
    return cls.from_pretrained(directory, device=device)
