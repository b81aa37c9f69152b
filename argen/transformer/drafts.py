"""Draft tokens looked up in the training corpus, for speculative decoding.

A decoder that has learnt its training sequences well often continues a sample the way some training
sequence continued the same last few tokens: an SVG path, once its first points are down, tends to
follow a drawing the model saw. A table from every context of the last ``n`` tokens (``n`` in
:data:`CONTEXTS`, longest match first) to the corpus's most frequent next token names those
continuations without running the model (retrieval drafting, as in REST, He et al. 2024).

The drafts are point masses chosen from the committed tokens alone, so speculative sampling accepts
each with probability ``p(draft)`` and the samples keep exactly the sequential distribution, whatever
the table holds. A table from the wrong corpus costs speed, never correctness.

The corpus travels with an export as ``drafts.safetensors`` (token ids and sequence lengths); the
table is built on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CONTEXTS = (8, 6, 4, 3, 2, 1)  # context lengths tried, longest first (BENCHMARKS.md: "Corpus drafts")
FILE = "drafts.safetensors"
_MUL, _MASK = 0x9E3779B97F4A7C15, (1 << 64) - 1


class CorpusDrafts:
    """Most frequent next token after each context of the last ``n`` tokens of a corpus.

    Contexts are keyed by a 64-bit polynomial hash of their tokens (and length): a collision could
    only cost a rejected draft. The table is built with NumPy, so a corpus of a few hundred thousand
    tokens is ready in well under a second.
    """

    def __init__(self, sequences: Iterable[Sequence[int]], contexts: Sequence[int] = CONTEXTS):
        self.sequences = [list(map(int, s)) for s in sequences]
        if not self.sequences:
            raise ValueError("CorpusDrafts needs at least one token sequence")
        if not contexts or any(int(n) < 1 for n in contexts):
            raise ValueError(f"contexts must be positive lengths, got {tuple(contexts)!r}")
        self.contexts = tuple(sorted({int(n) for n in contexts}, reverse=True))
        self._table: dict[int, int] | None = None

    @staticmethod
    def _key(context: Sequence[int]) -> int:
        h = len(context)
        for t in context:
            h = (h * _MUL + t + 1) & _MASK
        return h

    @property
    def table(self) -> dict[int, int]:
        """Context key (:meth:`_key`) -> the most frequent next token (ties: the smallest id)."""
        if self._table is None:
            tokens = np.fromiter((t for s in self.sequences for t in s), dtype=np.uint64)
            lengths = np.array([len(s) for s in self.sequences])
            offset = np.arange(len(tokens)) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # index in its sequence
            keys, nexts = [], []
            with np.errstate(over="ignore"):  # the hash wraps modulo 2**64 on purpose
                for n in self.contexts:
                    at = np.flatnonzero(offset >= n)  # positions with n tokens before them in their sequence
                    h = np.full(len(at), n, dtype=np.uint64)
                    for j in range(n, 0, -1):
                        h = h * np.uint64(_MUL) + tokens[at - j] + np.uint64(1)
                    keys.append(h)
                    nexts.append(tokens[at])
            keys, nexts = np.concatenate(keys), np.concatenate(nexts)
            order = np.lexsort((nexts, keys))
            keys, nexts = keys[order], nexts[order]
            first = np.r_[True, (keys[1:] != keys[:-1]) | (nexts[1:] != nexts[:-1])]  # each (key, next) pair
            starts = np.flatnonzero(first)
            counts = np.diff(np.r_[starts, len(keys)])
            keys, nexts = keys[starts], nexts[starts]
            order = np.lexsort((nexts, -counts, keys))  # per key: most counted, then smallest id
            keys, nexts = keys[order], nexts[order]
            best = np.r_[True, keys[1:] != keys[:-1]]
            self._table = dict(zip(keys[best].tolist(), nexts[best].tolist()))
        return self._table

    def next_token(self, history: Sequence[int], own: dict[int, int] | None = None) -> int | None:
        """The most frequent continuation of the longest context of ``history`` the corpus knows;
        ``own`` (:meth:`remember`), the row's own earlier continuation of a context, comes first."""
        table = self.table
        for n in self.contexts:
            if len(history) >= n:
                key = self._key(history[-n:])
                token = own.get(key) if own else None
                if token is None:
                    token = table.get(key)
                if token is not None:
                    return token
        return None

    def remember(self, own: dict[int, int], row: Sequence[int], start: int, end: int) -> None:
        """Add to ``own`` what followed each context in ``row`` at positions ``start .. end - 1``
        (the latest continuation wins): a row that repeats itself, as a looping sample does, is
        drafted from its own past (prompt lookup) before the corpus."""
        for j in range(max(start, 1), end):
            for n in self.contexts:
                if j >= n:
                    own[self._key(row[j - n : j])] = row[j]

    def propose(self, histories: Sequence[Sequence[int]], width: int,
                owns: Sequence[dict[int, int]] | None = None) -> torch.Tensor:
        """(B, width) drafts chained from each history; -1 from the first context the corpus lacks."""
        span, rows = self.contexts[0], []
        for r, history in enumerate(histories):
            own = owns[r] if owns is not None else None
            history, row = list(history[-span:]), []
            while len(row) < width and (token := self.next_token(history, own)) is not None:
                row.append(token)
                history = history[1:] + [token] if len(history) == span else history + [token]
            rows.append(row + [-1] * (width - len(row)))
        return torch.tensor(rows, dtype=torch.long).view(len(histories), width)

    # -- on disk, beside an export -------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE
        save_file({"tokens": torch.tensor([t for s in self.sequences for t in s], dtype=torch.int32),
                   "lengths": torch.tensor([len(s) for s in self.sequences], dtype=torch.int64),
                   "contexts": torch.tensor(self.contexts, dtype=torch.int64)}, str(path))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> CorpusDrafts | None:
        """The drafts saved in an export folder, or None where it has none."""
        path = Path(directory) / FILE
        if not path.is_file():
            return None
        t = load_file(str(path))
        if t["lengths"].sum() != t["tokens"].numel() or (t["lengths"] < 0).any():
            raise ValueError(f"{path}: token count does not match the sequence lengths")
        return cls([s.tolist() for s in t["tokens"].split(t["lengths"].tolist())], contexts=t["contexts"].tolist())


class BatchDrafts:
    """Drafting for one batch: the shared corpus, and each row's own table of what it has written."""

    def __init__(self, corpus: CorpusDrafts, batch: int):
        self.corpus = corpus
        self.own: list[dict[int, int]] = [{} for _ in range(batch)]
        self.seen = [0] * batch  # committed tokens already in ``own``

    def propose(self, rows: Sequence[Sequence[int]], lengths: Sequence[int], done: Sequence[bool],
                width: int) -> torch.Tensor:
        """(B, width) drafts after each row's committed tokens ``rows[r][:lengths[r]]`` (-1: none)."""
        span, histories = self.corpus.contexts[0], []
        for r, (row, end, stop) in enumerate(zip(rows, lengths, done)):
            if stop:
                histories.append([])
                continue
            self.corpus.remember(self.own[r], row, self.seen[r], end)
            self.seen[r] = end
            histories.append(row[max(0, end - span) : end])
        return self.corpus.propose(histories, width, self.own)
