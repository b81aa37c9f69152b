"""Text tokenizer: train, save, load and batch-encode captions with HF ``tokenizers``.

A Unigram model (the SentencePiece algorithm Parti uses) behind NFKC + lowercase normalization and
a Metaspace pre-tokenizer. Every encoded row is ``<bos> … <eos>``, so the empty caption ``""`` is
``[<bos>, <eos>]``: the "no text" row of classifier-free guidance.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def _skeleton() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(),
        normalizers.Lowercase(),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    return tok


class TextTokenizer:
    """A trained HF ``tokenizers.Tokenizer`` with the ids and batching argen needs."""

    def __init__(self, tokenizer: Tokenizer, source: str = "<memory>"):
        missing = [s for s in SPECIALS if tokenizer.token_to_id(s) is None]
        if missing:
            raise ValueError(f"{source}: text tokenizer lacks the special tokens {missing} "
                             f"(argen needs {list(SPECIALS)}); train it with `python -m argen.data tokenizer`")
        self.tokenizer = tokenizer
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (tokenizer.token_to_id(s) for s in SPECIALS)
        # Set here, not only at training time, so that any tokenizer.json with our specials frames rows.
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<bos> $A <eos>", pair="<bos> $A <eos> $B <eos>",
            special_tokens=[("<bos>", self.bos_id), ("<eos>", self.eos_id)])
        tokenizer.no_padding()
        tokenizer.no_truncation()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> TextTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"text tokenizer file {path} does not exist; train one with "
                                    f"`python -m argen.data tokenizer --shards … --out {path}`")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:
            raise ValueError(f"{path}: not a tokenizers JSON file ({e})") from e
        return cls(tok, source=str(path))

    @classmethod
    def from_str(cls, text: str) -> TextTokenizer:
        return cls(Tokenizer.from_str(text))

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, show_progress: bool = False) -> TextTokenizer:
        """Train a Unigram tokenizer of at most ``vocab_size`` ids (specials included).

        HF's Unigram trainer seeds its candidate pieces from substrings that repeat among the
        *distinct* words, ignoring how often each word occurs. On a small vocabulary of words (the
        shapes captions) no whole word repeats, and the result is characters only. Where the
        trainer leaves room, we add the words it missed that occur at least twice, scored by their
        unigram log frequency, as SentencePiece's count-weighted seeding would have.
        """
        if vocab_size < len(SPECIALS) + 1:
            raise ValueError(f"vocab_size must be > {len(SPECIALS)}, got {vocab_size}")
        tok = _skeleton()
        counter = _skeleton()  # not `tok`: the trainer holds `tok` while it pulls texts from us
        words: Counter[str] = Counter()

        def counted(it: Iterable[str]):
            for t in it:
                if not isinstance(t, str):
                    raise TypeError(f"TextTokenizer.train needs strings, got {type(t).__name__}: {t!r}")
                norm = counter.normalizer.normalize_str(t)
                words.update(w for w, _ in counter.pre_tokenizer.pre_tokenize_str(norm))
                yield t

        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                          unk_token="<unk>", show_progress=show_progress)
        tok.train_from_iterator(counted(texts), trainer)
        if not words:
            raise ValueError("TextTokenizer.train got no text to train on")
        if tok.get_vocab_size() < vocab_size:
            tok = _add_missing_words(tok, words, vocab_size)
        return cls(tok)

    # -- io -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))
        return path

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    # -- use ------------------------------------------------------------------------------------
    def encode(self, texts: list[str], max_len: int, warn: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> ``(ids, mask)``, both (B, T) with T = the longest row (≤ ``max_len``).

        Rows are ``<bos> … <eos>`` padded with ``pad_id``; ``mask`` is True on real tokens. A row
        longer than ``max_len`` keeps its first ``max_len - 1`` tokens and its ``<eos>``.
        """
        if isinstance(texts, str):
            raise TypeError("TextTokenizer.encode takes a list of captions, not one string")
        if max_len < 2:
            raise ValueError(f"max_len must be ≥ 2 (room for <bos> and <eos>), got {max_len}")
        rows = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        for i, r in enumerate(rows):
            if len(r) > max_len:
                if warn:
                    warnings.warn(f"prompt truncated from {len(r)} to {max_len} tokens: {texts[i]!r}",
                                  stacklevel=2)
                rows[i] = r[: max_len - 1] + [self.eos_id]
        width = max((len(r) for r in rows), default=2)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = True
        return ids, mask

    def decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """(B, T) ids -> captions (normalized text), dropping pad/bos/eos and anything after eos."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 2:
                raise ValueError(f"decode takes (B, T) ids, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        rows = []
        for r in ids:
            r = list(r)
            if self.bos_id in r[:1]:
                r = r[1:]
            if self.eos_id in r:
                r = r[: r.index(self.eos_id)]
            rows.append([i for i in r if i != self.pad_id])
        return self.tokenizer.decode_batch(rows, skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size})"


def _add_missing_words(tok: Tokenizer, words: Counter[str], vocab_size: int) -> Tokenizer:
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    have = {piece for piece, _ in vocab}
    total = sum(words.values())
    room = vocab_size - len(vocab)
    extra = [(w, n) for w, n in words.most_common() if n >= 2 and w not in have][:room]
    vocab.extend([w, math.log(n / total)] for w, n in extra)
    return Tokenizer.from_str(json.dumps(state))
