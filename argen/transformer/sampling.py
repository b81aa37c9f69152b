"""Autoregressive sampling from an :class:`~argen.transformer.model.EncoderDecoder`.

Fast and exact: a static KV cache written in place (no per-step ``torch.cat``), cross-attention
K/V projected once per prompt, classifier-free guidance as one batch of cond + uncond rows, and
per-row seeds turned into pre-drawn uniforms sampled by inverse CDF, so a row's sample depends on
its seed alone, not on what else is in the batch. ``use_cache=False`` recomputes the full
forward pass every step and is the reference the cached path is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from argen.targets import TargetTokenizer
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


def _compiled_step(model: EncoderDecoder):
    """``model.decode_step`` compiled once per model with static shapes (CUDA graphs on GPU)."""
    fn = model.__dict__.get("_argen_compiled_step")
    if fn is None:
        fn = torch.compile(model.decode_step, mode="reduce-overhead", fullgraph=True, dynamic=False)
        model.__dict__["_argen_compiled_step"] = fn
    return fn


def check_sampling(cfg_scale: float, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """``ValueError`` naming the first sampling setting out of range."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if cfg_scale < 0:
        raise ValueError(f"cfg_scale must be >= 0, got {cfg_scale}")


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
        temperature, top_k, top_p: sampling; temperature 0 is greedy.
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
    row has finished, so L may be shorter than ``max_len``. The decoding buffers stay on the model
    for reuse; ``model.clear_cache()`` frees them.
    """
    max_len = int(max_len if max_len is not None else target.max_len)
    _check(model, text_ids, text_mask, target, cfg_scale, temperature, top_k, top_p, max_len, uncond_ids)
    device = next(model.parameters()).device
    B, L = text_ids.shape[0], max_len
    text_ids, text_mask = text_ids.to(device), text_mask.to(device).bool()
    guided = cfg_scale != 1.0
    if guided:
        text_ids, text_mask = _guided_rows(text_ids, text_mask, uncond_ids.to(device),
                                           None if uncond_mask is None else uncond_mask.to(device))
    copies = text_ids.shape[0] // B  # memory rows per token row: 2 when cond and uncond share tokens
    P = 0 if prefix is None else prefix.shape[1]
    if prefix is not None and (prefix.dim() != 2 or prefix.shape[0] != B or P > L):
        raise ValueError(f"prefix must be (B={B}, P<={L}), got {tuple(prefix.shape)}")

    uniforms = None if temperature == 0 else _uniforms(seeds, B, L, device)
    grammar = target.grammar()
    grammar = grammar.to(device) if grammar is not None else None
    state = grammar.initial(B, device) if grammar is not None else None
    eos = target.eos_id
    fill = target.pad_id if target.pad_id is not None else (eos if eos is not None else 0)
    finished = torch.zeros(B, dtype=torch.bool, device=device)

    out = torch.full((B, L), fill, dtype=torch.long, device=device)
    dec_in = torch.full((B, L), model.bos_id, dtype=torch.long, device=device)  # column t: input at t
    positions = torch.arange(L, device=device)
    has_features = len(model.config.target_feature_sizes) > 0

    def emit(t: int, token: torch.Tensor) -> torch.Tensor:
        """Book-keep token t of every row: EOS/pad, grammar state, next decoder input."""
        nonlocal state, finished
        if eos is not None:
            token = token.masked_fill(finished, fill)
        if grammar is not None:
            nxt = grammar.step(state, token)
            state = nxt if eos is None else torch.where(finished, state, nxt)
        if eos is not None:
            finished = finished | (token == eos)
        out[:, t] = token
        if t + 1 < L:
            dec_in[:, t + 1] = token
        return token

    if P:
        for t in range(P):
            emit(t, prefix[:, t].to(device=device, dtype=torch.long))

    was_training = model.training
    model.eval()
    try:
        if use_cache:
            model.setup_cache(model.encode(text_ids, text_mask), text_mask, L, pack=not compile, guided=guided)
            step = _compiled_step(model) if compile else None
        recorded, n = [], P
        for t in range(P, L):
            if eos is not None and bool(finished.all()):
                break
            lo = 0 if (t == P or not use_cache) else t  # first cached call prefills BOS + prefix
            x, pos = dec_in[:, lo : t + 1], positions[lo : t + 1]
            feats = target.token_features(x, pos) if has_features else None
            scale = cfg_scale if guided else None  # guided: u + s * (c - u) over [cond; uncond] rows
            if not use_cache:
                x, feats = x.repeat(copies, 1), None if feats is None else feats.repeat(copies, 1, 1)
                hidden = model.decode(model.encode(text_ids, text_mask), text_mask, x, feats)[:, -1]
                logits = model.logits(hidden) if scale is None else model.guided_logits(hidden, scale)
            elif step is not None and lo == t:  # single-token steps; a prefill runs eagerly
                if device.type == "cuda":
                    torch.compiler.cudagraph_mark_step_begin()  # the last step's outputs are consumed
                logits = step(x, feats, pos, None, scale)
            else:
                logits = model.decode_step(x, feats, pos, kv_len=t + 1, cfg_scale=scale)
            logits = logits.float()
            if return_logits:
                recorded.append(logits.clone())
            if grammar is not None:
                allowed = grammar.mask(state)
                if eos is not None:
                    allowed = allowed | finished[:, None]  # finished rows are overwritten with pad
                logits = logits.masked_fill(~allowed, float("-inf"))
            u = None if uniforms is None else uniforms[:, t]
            emit(t, sample_logits(logits, u, temperature, top_k, top_p))
            n = t + 1
            if callback is not None:
                callback(n, L)
            if on_tokens is not None:
                on_tokens(out[:, :n])
    finally:
        model.train(was_training)
        model.unpack()
    tokens = out[:, :n]
    if return_logits:
        V = model.config.target_vocab_size
        logits = torch.stack(recorded, 1) if recorded else torch.empty(B, 0, V, device=device)
        return tokens, logits
    return tokens


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
