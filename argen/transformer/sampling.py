"""Autoregressive sampling from an :class:`~argen.transformer.model.EncoderDecoder`, in named steps.

:func:`generate` is the composition: :func:`start` (checks, state, forced prefix), then either
:func:`decode_uncached` (the reference) or :func:`setup_cache`, :func:`prefill` and
:func:`decode_n_tokens` (one :func:`decode_one_token` per token, eager or compiled). A
:class:`DecodeState` carries what passes from token to token. :func:`forward_cached` is the one
cached model call under them all; it returns the logits of several positions at once, which is what
a speculative decoder needs to check k proposed tokens in one pass.

Fast and exact: a static KV cache written in place (no per-step ``torch.cat``), cross-attention
K/V projected once per prompt, classifier-free guidance as one batch of cond + uncond rows, and
per-row seeds turned into pre-drawn uniforms sampled by inverse CDF, so a row's sample depends on
its seed alone, not on what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from argen.sampling_config import check_sampling
from argen.targets import Grammar, TargetTokenizer
from argen.transformer.model import EncoderDecoder


def _pad_text(ids: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (B, S) ids/mask to ``length``; padding never changes the model's output."""
    extra = length - ids.shape[1]
    if extra == 0:
        return ids, mask
    return F.pad(ids, (0, extra)), F.pad(mask.bool(), (0, extra), value=False)


def _guided_rows(text_ids, text_mask, uncond_ids, uncond_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack cond rows over uncond rows (2B, S). ``uncond`` may be one row shared by all."""
    B = text_ids.shape[0]
    if uncond_mask is None:
        uncond_mask = torch.ones_like(uncond_ids, dtype=torch.bool)
    if uncond_ids.dim() != 2 or uncond_mask.shape != uncond_ids.shape or uncond_ids.shape[0] not in (1, B):
        raise ValueError(f"uncond_ids/uncond_mask must be (B, S) or (1, S) with B={B}; got "
                         f"{tuple(uncond_ids.shape)} and {tuple(uncond_mask.shape)}")
    uncond_ids, uncond_mask = uncond_ids.expand(B, -1), uncond_mask.expand(B, -1)
    S = max(text_ids.shape[1], uncond_ids.shape[1])
    a, am = _pad_text(text_ids, text_mask, S)
    b, bm = _pad_text(uncond_ids, uncond_mask, S)
    return torch.cat([a, b]), torch.cat([am.bool(), bm.bool()])


def _uniforms(seeds, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """(B, L) uniforms in [0, 1): row i from its own generator seeded ``seeds[i]``, or the global RNG."""
    if seeds is None:
        return torch.rand(batch, length).to(device)
    seeds = [int(s) for s in (seeds.tolist() if torch.is_tensor(seeds) else seeds)]
    if len(seeds) != batch:
        raise ValueError(f"seeds must hold one seed per row: got {len(seeds)} for {batch} rows")
    rows = [torch.rand(length, generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.stack(rows).to(device)


def sample_logits(logits: torch.Tensor, u: torch.Tensor | None, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """(B, V) float logits and (B,) uniforms -> (B,) token ids, by inverse CDF.

    Temperature 0 is greedy. Top-k keeps the k largest logits; top-p keeps the smallest set of
    most likely tokens whose mass reaches ``top_p``. Masked (-inf) logits are never drawn.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    if temperature != 1.0:
        logits = logits / temperature
    V = logits.shape[-1]
    if top_k is not None and top_k < V:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    order = None
    if top_p is not None and top_p < 1.0:
        logits, order = logits.sort(dim=-1, descending=True, stable=True)
        probs = logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of strictly more likely tokens
        probs = probs.masked_fill(before >= top_p, 0.0)
    else:
        probs = logits.softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:].contiguous()
    pick = torch.searchsorted(cdf, u[:, None] * total, right=True)
    # u * total can round up to total; the first index reaching the total is the last live token.
    # (A binary search, not an argmax over V, and no host sync: GPU steps stay asynchronous.)
    pick = torch.minimum(pick, torch.searchsorted(cdf, total))
    return (pick if order is None else order.gather(-1, pick)).squeeze(-1)


def compiled(model: EncoderDecoder, method: str):
    """``model.<method>`` (``decode_step``, ``decode_window``) compiled once per model with static
    shapes (CUDA graphs on GPU), kept on the model so later generations reuse it."""
    key = f"_argen_compiled_{method}"
    fn = model.__dict__.get(key)
    if fn is None:
        fn = torch.compile(getattr(model, method), mode="reduce-overhead", fullgraph=True, dynamic=False)
        model.__dict__[key] = fn
    return fn


def _check(model, text_ids, text_mask, target, cfg_scale, temperature, top_k, top_p, max_len, uncond_ids):
    c = model.config
    if target.vocab_size != c.target_vocab_size:
        raise ValueError(f"target vocab_size {target.vocab_size} != model target_vocab_size {c.target_vocab_size}")
    if len(target.feature_sizes) != len(c.target_feature_sizes):
        raise ValueError(f"target has {len(target.feature_sizes)} feature tables, model expects "
                         f"{len(c.target_feature_sizes)}")
    if text_ids.dim() != 2 or text_mask.shape != text_ids.shape or text_ids.shape[0] < 1:
        raise ValueError(f"text_ids and text_mask must both be (B, S) with B >= 1; got {tuple(text_ids.shape)} "
                         f"and {tuple(text_mask.shape)}")
    check_sampling(cfg_scale, temperature, top_k, top_p)
    if cfg_scale != 1.0 and uncond_ids is None:
        raise ValueError(f"cfg_scale={cfg_scale} needs uncond_ids (the empty caption's tokens)")
    if not 1 <= max_len <= c.max_target_len:
        raise ValueError(f"max_len must be in [1, {c.max_target_len}] for this model, got {max_len}")


# -- the state of one generation ----------------------------------------------------------------
@dataclass(eq=False)
class DecodeState:
    """What one generation carries from token to token, and the book-keeping of writing one.

    ``tokens[:, :n]`` are written; column ``t`` of ``inputs`` is the decoder input at position ``t``
    (BOS, then ``tokens[:, t - 1]``), whose output predicts ``tokens[:, t]``. So the next token,
    ``n``, is predicted from ``inputs[:, n]`` at position ``n``. ``text_ids``/``text_mask`` are the
    memory rows (2B rows ``[cond; uncond]`` under guidance, where ``cfg_scale`` is set).
    """

    target: TargetTokenizer
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    tokens: torch.Tensor  # (B, L)
    inputs: torch.Tensor  # (B, L)
    positions: torch.Tensor  # (L,)
    finished: torch.Tensor  # (B,) bool: the row has written eos_id
    grammar: Grammar | None
    grammar_state: torch.Tensor | None  # (B,) long
    uniforms: torch.Tensor | None  # (B, L): the draw for token t of each row; None when greedy
    temperature: float
    top_k: int | None
    top_p: float | None
    cfg_scale: float | None  # None: unguided
    fill: int  # what finished rows write
    has_features: bool
    n: int = 0
    recorded: list[torch.Tensor] | None = None  # guided float32 logits of each sampled token
    compiled_step: Callable | None = None

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    @property
    def done(self) -> bool:
        """All ``length`` tokens written, or every row has finished (a host sync when there is an EOS)."""
        return self.n >= self.length or (self.target.eos_id is not None and bool(self.finished.all()))

    def features(self, inputs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
        return self.target.token_features(inputs, positions) if self.has_features else None

    def emit(self, token: torch.Tensor) -> torch.Tensor:
        """Write token ``n`` of every row (pad for finished rows); advance grammar, EOS and the next input."""
        eos, t = self.target.eos_id, self.n
        if eos is not None:
            token = token.masked_fill(self.finished, self.fill)
        if self.grammar is not None:
            nxt = self.grammar.step(self.grammar_state, token)
            self.grammar_state = nxt if eos is None else torch.where(self.finished, self.grammar_state, nxt)
        if eos is not None:
            self.finished = self.finished | (token == eos)
        self.tokens[:, t] = token
        if t + 1 < self.length:
            self.inputs[:, t + 1] = token
        self.n = t + 1
        return token

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, V) float logits of token ``n`` -> with what the grammar forbids set to -inf."""
        if self.grammar is None:
            return logits
        allowed = self.grammar.mask(self.grammar_state)
        if self.target.eos_id is not None:
            allowed = allowed | self.finished[:, None]  # finished rows are overwritten with pad
        return logits.masked_fill(~allowed, float("-inf"))

    def take(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) of token ``n`` -> sample it (grammar, temperature, top-k/p, the row's draw) and write it."""
        logits = logits.float()
        if self.recorded is not None:
            self.recorded.append(logits.clone())
        u = None if self.uniforms is None else self.uniforms[:, self.n]
        return self.emit(sample_logits(self.mask(logits), u, self.temperature, self.top_k, self.top_p))

    def result(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokens[:, : self.n]
        if self.recorded is None:
            return tokens
        if self.recorded:
            return tokens, torch.stack(self.recorded, 1)
        return tokens, self.tokens.new_empty(self.tokens.shape[0], 0, self.target.vocab_size, dtype=torch.float32)


def start(model: EncoderDecoder, text_ids: torch.Tensor, text_mask: torch.Tensor, target: TargetTokenizer, *,
          uncond_ids: torch.Tensor | None = None, uncond_mask: torch.Tensor | None = None, cfg_scale: float = 1.0,
          temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
          seeds: Sequence[int] | torch.Tensor | None = None, prefix: torch.Tensor | None = None,
          max_len: int | None = None, return_logits: bool = False) -> DecodeState:
    """Check the request and set up its state, with the forced ``prefix`` already written."""
    max_len = int(max_len if max_len is not None else target.max_len)
    _check(model, text_ids, text_mask, target, cfg_scale, temperature, top_k, top_p, max_len, uncond_ids)
    device = next(model.parameters()).device
    B, L = text_ids.shape[0], max_len
    if prefix is not None and (prefix.dim() != 2 or prefix.shape[0] != B or prefix.shape[1] > L):
        raise ValueError(f"prefix must be (B={B}, P<={L}), got {tuple(prefix.shape)}")
    text_ids, text_mask = text_ids.to(device), text_mask.to(device).bool()
    guided = cfg_scale != 1.0
    if guided:
        text_ids, text_mask = _guided_rows(text_ids, text_mask, uncond_ids.to(device),
                                           None if uncond_mask is None else uncond_mask.to(device))
    grammar = target.grammar()
    grammar = grammar.to(device) if grammar is not None else None
    eos = target.eos_id
    fill = target.pad_id if target.pad_id is not None else (eos if eos is not None else 0)
    state = DecodeState(
        target=target, text_ids=text_ids, text_mask=text_mask,
        tokens=torch.full((B, L), fill, dtype=torch.long, device=device),
        inputs=torch.full((B, L), model.bos_id, dtype=torch.long, device=device),
        positions=torch.arange(L, device=device), finished=torch.zeros(B, dtype=torch.bool, device=device),
        grammar=grammar, grammar_state=None if grammar is None else grammar.initial(B, device),
        uniforms=None if temperature == 0 else _uniforms(seeds, B, L, device), temperature=temperature,
        top_k=top_k, top_p=top_p, cfg_scale=cfg_scale if guided else None, fill=fill,
        has_features=len(model.config.target_feature_sizes) > 0, recorded=[] if return_logits else None)
    for t in range(0 if prefix is None else prefix.shape[1]):
        state.emit(prefix[:, t].to(device=device, dtype=torch.long))
    return state


# -- the steps -----------------------------------------------------------------------------------
def forward_cached(model: EncoderDecoder, state: DecodeState, inputs: torch.Tensor, start: int) -> torch.Tensor:
    """One cached pass over decoder ``inputs`` (B, T) at positions ``start .. start+T-1``.

    Writes their keys/values into the cache and returns the (guided) logits after the last input,
    (B, V). Attention reads only the first ``start + T`` cache slots, so slots beyond them need no
    clearing: they are never read, and the next pass from an earlier position overwrites them.
    (Checking k drafted tokens at once, with each row at its own length, is
    :meth:`EncoderDecoder.decode_window`, used by :mod:`argen.transformer.speculative`.)
    """
    T = inputs.shape[1]
    pos = state.positions[start : start + T]
    return model.decode_step(inputs, state.features(inputs, pos), pos, kv_len=start + T,
                             cfg_scale=state.cfg_scale)


def prefill(model: EncoderDecoder, state: DecodeState) -> torch.Tensor:
    """BOS and the forced prefix in one cached pass; samples and writes the first free token."""
    return state.take(forward_cached(model, state, state.inputs[:, : state.n + 1], 0))


def decode_one_token(model: EncoderDecoder, state: DecodeState) -> torch.Tensor:
    """One cached step: the logits of token ``n`` from its input alone, then sample and write it.

    Eager, it reads the filled cache prefix (``kv_len``); compiled, it runs the static-shape graph
    (whole cache under a position mask) that ``torch.compile`` captured once for this model.
    """
    if state.compiled_step is None:
        return state.take(forward_cached(model, state, state.inputs[:, state.n : state.n + 1], state.n))
    x, pos = state.inputs[:, state.n : state.n + 1], state.positions[state.n : state.n + 1]
    if x.device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs are consumed
    return state.take(state.compiled_step(x, state.features(x, pos), pos, None, state.cfg_scale))


def decode_n_tokens(model: EncoderDecoder, state: DecodeState, num: int,
                    callback: Callable[[int, int], None] | None = None) -> None:
    """Up to ``num`` more tokens, one cached step each, stopping early once every row has finished."""
    for _ in range(num):
        if state.done:
            return
        decode_one_token(model, state)
        if callback is not None:
            callback(state.n, state.length)


def decode_uncached(model: EncoderDecoder, state: DecodeState,
                    callback: Callable[[int, int], None] | None = None) -> None:
    """The reference: every token from the full forward pass (encoder included), no cache.

    Slow, and the definition of what the cached steps must reproduce (tests/test_sampling.py).
    """
    copies = state.text_ids.shape[0] // state.tokens.shape[0]  # 2 under guidance: [cond; uncond]
    while not state.done:
        x, pos = state.inputs[:, : state.n + 1], state.positions[: state.n + 1]
        feats = state.features(x, pos)
        x, feats = x.repeat(copies, 1), None if feats is None else feats.repeat(copies, 1, 1)
        hidden = model.decode(model.encode(state.text_ids, state.text_mask), state.text_mask, x, feats)[:, -1]
        state.take(model.logits(hidden) if state.cfg_scale is None else model.guided_logits(hidden, state.cfg_scale))
        if callback is not None:
            callback(state.n, state.length)


def setup_cache(model: EncoderDecoder, state: DecodeState, compile: bool = False) -> None:
    """Encode the text once, project its cross-attention K/V, size the self-attention cache."""
    model.setup_cache(model.encode(state.text_ids, state.text_mask), state.text_mask, state.length,
                      pack=not compile, guided=state.cfg_scale is not None)
    state.compiled_step = compiled(model, "decode_step") if compile else None


@contextmanager
def inference(model: EncoderDecoder) -> Iterator[None]:
    """Eval mode for the generation, then the caller's mode back and the packed weights parked: kept
    for the next generation, which reuses them while the weights are unchanged, but not used by
    other passes (``model.unpack()`` frees them)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
        model.park()


@torch.no_grad()
def generate(model: EncoderDecoder, text_ids: torch.Tensor, text_mask: torch.Tensor, target: TargetTokenizer, *,
             uncond_ids: torch.Tensor | None = None, uncond_mask: torch.Tensor | None = None,
             cfg_scale: float = 1.0, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seeds: Sequence[int] | torch.Tensor | None = None,
             prefix: torch.Tensor | None = None, use_cache: bool = True, max_len: int | None = None,
             return_logits: bool = False, callback: Callable[[int, int], None] | None = None,
             on_tokens: Callable[[torch.Tensor], None] | None = None,
             compile: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sample target tokens (B, L) for B text rows (already replicated per sample by the caller).

    Args:
        uncond_ids, uncond_mask: the unconditional (empty-caption) text, (B, S') or (1, S').
            With ``cfg_scale != 1`` the model runs cond and uncond rows as one batch of 2B and
            samples from ``u + cfg_scale * (c - u)``.
        temperature, top_k, top_p: sampling; temperature 0 is greedy; ``None`` turns a filter off.
        seeds: one int per row; fixes that row's sample whatever the batch holds. ``None`` draws
            from torch's global RNG.
        prefix: (B, P) forced first tokens, prefilled in one pass (completion / editing).
        use_cache: ``False`` recomputes the full forward every step (exactness reference).
        max_len: tokens per row including the prefix; defaults to ``target.max_len``.
        return_logits: also return the guided float32 logits of every sampled step, (B, L - P, V),
            before grammar masking and temperature.
        callback: called as ``callback(done, total)`` after each step (progress bars).
        on_tokens: called after each step with the (B, done) tokens so far, a view into the
            decoding buffer (copy what you keep): progressive previews.
        compile: run the single-token step through ``torch.compile`` (CUDA graphs on GPU).

    Rows whose target emits ``eos_id`` continue with ``pad_id``; decoding stops early once every
    row has finished, so L may be shorter than ``max_len``. The decoding buffers and packed weights
    stay on the model for reuse; ``model.clear_cache()`` frees them.
    """
    state = start(model, text_ids, text_mask, target, uncond_ids=uncond_ids, uncond_mask=uncond_mask,
                  cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p, seeds=seeds,
                  prefix=prefix, max_len=max_len, return_logits=return_logits)
    if on_tokens is not None:  # the tokens so far ride on the per-step hook
        progress = callback

        def callback(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)
            on_tokens(state.tokens[:, :done])

    with inference(model):
        if not use_cache:
            decode_uncached(model, state, callback)
        elif not state.done:
            setup_cache(model, state, compile)
            prefill(model, state)
            if callback is not None:
                callback(state.n, state.length)
            decode_n_tokens(model, state, state.length - state.n, callback)
    return state.result()


@torch.no_grad()
def log_likelihood(model: EncoderDecoder, text_ids: torch.Tensor, text_mask: torch.Tensor, targets: torch.Tensor,
                   target: TargetTokenizer) -> torch.Tensor:
    """Sum of log p(target tokens | text) per row, (B,), in one teacher-forced pass.

    Counts tokens up to and including the first ``eos_id``; ``pad_id`` tokens are ignored.
    """
    if targets.dim() != 2 or targets.shape[0] != text_ids.shape[0]:
        raise ValueError(f"targets must be (B, L) with B={text_ids.shape[0]}, got {tuple(targets.shape)}")
    device = next(model.parameters()).device
    targets = targets.to(device)
    inputs = model.shift_right(targets)
    positions = torch.arange(targets.shape[1], device=device)
    feats = target.token_features(inputs, positions) if model.config.target_feature_sizes else None
    was_training = model.training
    model.eval()
    try:
        logits = model(text_ids.to(device), text_mask.to(device), inputs, feats).float()
    finally:
        model.train(was_training)
    token_lp = logits.gather(-1, targets[..., None]).squeeze(-1) - logits.logsumexp(dim=-1)
    valid = torch.ones_like(targets, dtype=torch.bool)
    if target.eos_id is not None:
        is_eos = (targets == target.eos_id).long()
        valid &= (is_eos.cumsum(1) - is_eos) == 0  # at or before the first EOS
    if target.pad_id is not None and target.pad_id != target.eos_id:
        valid &= targets != target.pad_id
    return (token_lp * valid).sum(dim=1)


@torch.no_grad()
def rerank_scores(model: EncoderDecoder, text_ids: torch.Tensor, text_mask: torch.Tensor,
                  uncond_ids: torch.Tensor, uncond_mask: torch.Tensor | None, targets: torch.Tensor,
                  target: TargetTokenizer) -> torch.Tensor:
    """Conditional minus unconditional log-likelihood per row, (B,), in one batched pass.

    Higher means the sample owes more to its caption; sort a prompt's samples by it, best first.
    """
    rows, mask = _guided_rows(text_ids, text_mask.bool(), uncond_ids.to(text_ids.device),
                              None if uncond_mask is None else uncond_mask.to(text_ids.device))
    ll = log_likelihood(model, rows, mask, targets.repeat(2, 1), target)
    B = text_ids.shape[0]
    return ll[:B] - ll[B:]
