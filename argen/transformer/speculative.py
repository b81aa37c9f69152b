"""Speculative Jacobi decoding: several target tokens per decoder pass, sampled exactly as sequentially.

Each row keeps ``window`` draft tokens after its committed prefix. One decoder pass over
``[last committed token, drafts]`` gives the distribution ``p`` that sequential decoding would sample
from at every window position (guidance, grammar, temperature, top-k and top-p applied). Left to
right, draft ``x`` is accepted with probability ``min(1, p(x) / q(x))``, ``q`` being the distribution
it was drawn from; at the first rejection the token is drawn from ``normalize(max(p - q, 0))``, and
after a fully accepted window a bonus token comes from ``p``. That is speculative sampling (Leviathan
et al. 2023; SJD, Teng et al. 2025), so every committed token has exactly the sequential
distribution, whatever the drafts were.

The drafts for the next pass come from this pass's ``p`` at the positions after the new prefix, drawn
by the Gumbel-max trick with noise fixed per (row, position, token) across passes (the coupling of
MC-SJD / SCD, arXiv 2510.24211): once a prefix stops changing, the drafts after it stop changing and
are accepted with probability one, which plain SJD's independent redraws never reach. The noise of a
position is used by only one acceptance test (a tested position is committed either way), so each
draft is still an exact sample of its ``q``. Positions past the last computed logits get a
point-mass draft from a bigram table of the row's own committed tokens (n-gram lookup). Given a
corpus (:mod:`argen.transformer.drafts`), its continuations of the committed tokens come first, as
point masses: a model that has learnt its training sequences is drafted far better by them.

Rows advance independently: each writes its keys at its own positions in the static KV cache
(:meth:`~argen.transformer.model.EncoderDecoder.decode_window`), and queries see only keys at or
before their position, so the stale drafts left in later slots need no rollback.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from argen.sampling_config import check_sampling
from argen.targets import TargetTokenizer
from argen.transformer.drafts import BatchDrafts, CorpusDrafts
from argen.transformer.model import EncoderDecoder
from argen.transformer.sampling import compiled, inference, start

TOP_P_CANDIDATES = (32, 256)  # tokens sorted for a top-p nucleus, in turn, before all V (token_probs)
CANDIDATES = 64  # a draft is drawn among the q's most likely tokens (any proposal is exact; see draw_drafts)
_M32 = 0xFFFFFFFF


@dataclass
class SpeculativeStats:
    """What a speculative run did: filled in by :func:`generate_speculative` when passed to it."""

    passes: int = 0  # decoder passes of the batch (a prefix prefill included)
    tokens: list[int] = field(default_factory=list)  # tokens each row sampled (forced prefix excluded)
    row_passes: list[int] = field(default_factory=list)  # passes each row took until it was done

    @property
    def mean_accepted(self) -> float:
        """Tokens committed per pass, averaged over rows (1.0 is sequential decoding)."""
        rates = [t / p for t, p in zip(self.tokens, self.row_passes) if p]
        return sum(rates) / len(rates) if rates else 0.0


def speculative_window(speculative: bool | int | None, target: TargetTokenizer) -> int:
    """The window a ``speculative=`` argument asks for: 0 (off) for False/None/0, the target's own
    :attr:`~argen.targets.TargetTokenizer.speculative_window` for True."""
    if speculative is None or speculative is False:
        return 0
    if speculative is True:
        return target.speculative_window
    if isinstance(speculative, int) and 0 <= speculative <= 256:
        return speculative
    raise ValueError(f"speculative must be True, False or a window size in [1, 256], got {speculative!r}")


def token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None) -> torch.Tensor:
    """Float logits (..., V) -> the probabilities :func:`~argen.transformer.sampling.sample_logits` draws
    from: one-hot argmax at temperature 0, else softmax(logits / T) after the top-k and top-p filters."""
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    if temperature != 1.0:
        logits = logits / temperature
    V = logits.shape[-1]
    if top_k is not None and top_k < V:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    if top_p is None or top_p >= 1.0:
        return probs
    # The nucleus is nearly always among the most likely few dozen tokens, so only those are sorted
    # (a full sort of a window over all V was the verify pass's costliest step: BENCHMARKS.md). Where
    # it is not, a few hundred are; where a tie straddles the edge (then the order of equal logits
    # decides) or the nucleus is wider still, all V are.
    for candidates in TOP_P_CANDIDATES:
        top, ids = probs.topk(min(candidates, V), dim=-1)
        kept = (top.cumsum(dim=-1) - top < top_p).sum(-1, keepdim=True)  # mass of more likely tokens
        if bool((kept < top.shape[-1]).all()) and bool((top.gather(-1, kept - 1) > top.gather(-1, kept)).all()):
            top = top.masked_fill(torch.arange(top.shape[-1], device=top.device) >= kept, 0.0)
            probs = torch.zeros_like(probs).scatter_(-1, ids, top)
            break
    else:
        ordered, order = logits.sort(dim=-1, descending=True, stable=True)
        ordered = ordered.softmax(dim=-1)
        ordered = ordered.masked_fill(ordered.cumsum(dim=-1) - ordered >= top_p, 0.0)
        probs = torch.zeros_like(ordered).scatter_(-1, order, ordered)
    return probs / probs.sum(dim=-1, keepdim=True)


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B, V) non-negative weights, (B,) uniforms -> (B,) ids; a zero-weight id is never drawn."""
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:].contiguous()
    pick = torch.searchsorted(cdf, u[:, None] * total, right=True)
    return torch.minimum(pick, torch.searchsorted(cdf, total)).squeeze(-1)


def accept(p_draft: torch.Tensor, q_draft: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Speculative sampling's test: accept with probability ``min(1, p / q)`` given uniforms ``r``.

    A module-level function so the exactness test can swap in a broken rule and see it caught.
    """
    return r * q_draft < p_draft


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (lowbias32) on int64 tensors holding values in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def site_keys(keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Row keys (B,) and positions (B, W) -> one 32-bit key per (row, position), (B, W)."""
    return _hash32((keys[:, None] + _hash32(positions & _M32)) & _M32)


def gumbel_noise(sites: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise (B, W, K) that depends only on (row, position) through ``sites`` (B, W)
    (:func:`site_keys`) and on the token id.

    Counter-based (a hash, no generator state), so a position sees the same noise for a token in
    every pass: the coupling that makes redrawn drafts repeat once their distribution settles.
    """
    bits = _hash32((sites[..., None] + ids * 0x9E3779B1) & _M32) >> 8  # 24 bits: exact in float32
    u = (bits.float() + 0.5) * (1.0 / (1 << 24))
    return -torch.log(-torch.log(u))


def draw_drafts(probs: torch.Tensor, sites: torch.Tensor, candidates: int = CANDIDATES,
                source: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coupled drafts at the W positions whose :func:`site_keys` are ``sites`` (B, W), from ``probs``
    (B, W', V) read at window index ``source`` (B, W) (default: ``probs`` holds exactly the W positions).

    The proposal ``q`` is ``probs`` cut to its ``candidates`` most likely tokens and renormalised: any
    proposal keeps the result exact, and this one costs K rather than V noise draws per position.
    Returns the drafts (B, W), their q (B, W), and q itself as candidate ids and weights (B, W, K).
    """
    top, ids = probs.topk(min(candidates, probs.shape[-1]), dim=-1)
    if source is not None:
        index = source[..., None].expand(-1, -1, top.shape[-1])
        top, ids = top.gather(1, index), ids.gather(1, index)
    total = top.sum(-1, keepdim=True)
    point = torch.zeros_like(top[0, 0])
    point[0] = 1.0
    q = torch.where(total > 0, top / total.clamp_min(1e-30), point)  # no mass (unreachable state): a point
    score = q.log() + gumbel_noise(sites, ids)
    choice = score.argmax(-1, keepdim=True)
    return ids.gather(-1, choice).squeeze(-1), q.gather(-1, choice).squeeze(-1), ids, q


def _row_randomness(seeds, batch: int, length: int, device: torch.device, text_ids=None, text_mask=None):
    """Per row: a noise key, acceptance uniforms and correction uniforms, from that row's seed and text.

    The text enters because the Gumbel coupling is strong: rows of two prompts that share a seed (as
    ``Generator`` gives sample j of every prompt) would otherwise often write the very same tokens
    where the model barely tells the prompts apart, far more often than sequential sampling does.
    """
    if seeds is None:
        gens = [None] * batch
    else:
        seeds = [int(s) for s in (seeds.tolist() if torch.is_tensor(seeds) else seeds)]
        if len(seeds) != batch:
            raise ValueError(f"seeds must hold one seed per row: got {len(seeds)} for {batch} rows")
        if text_ids is not None:  # only the valid tokens: padding depends on the rest of the batch
            texts = [zlib.crc32(str(ids[m.bool()].tolist()).encode()) for ids, m in zip(text_ids, text_mask)]
            seeds = [(s * 0x100000001B3 + t) % (1 << 63) for s, t in zip(seeds, texts)]
        gens = [torch.Generator().manual_seed(s) for s in seeds]
    keys = torch.stack([torch.randint(0, 1 << 32, (), generator=g) for g in gens])
    r = torch.stack([torch.rand(length, generator=g) for g in gens])
    u = torch.stack([torch.rand(length, generator=g) for g in gens])
    return keys.to(device), r.to(device), u.to(device)


@torch.no_grad()
def generate_speculative(model: EncoderDecoder, text_ids: torch.Tensor, text_mask: torch.Tensor,
                         target: TargetTokenizer, *, window: int | None = None,
                         uncond_ids: torch.Tensor | None = None, uncond_mask: torch.Tensor | None = None,
                         cfg_scale: float = 1.0, temperature: float = 1.0, top_k: int | None = None,
                         top_p: float | None = None, seeds: Sequence[int] | torch.Tensor | None = None,
                         prefix: torch.Tensor | None = None, max_len: int | None = None,
                         callback: Callable[[int, int], None] | None = None, compile: bool = False,
                         stats: SpeculativeStats | None = None, corpus: CorpusDrafts | None = None) -> torch.Tensor:
    """Sample target tokens (B, L) like :func:`argen.transformer.sampling.generate`, in fewer passes.

    Same arguments and output (EOS, pad, early stop, grammar, guidance); the samples follow the
    same distribution but are not the same draws for a seed, except when decoding is greedy
    (temperature 0 or top-k 1), where they are the same tokens. ``window``: drafts per row and
    pass (default: the target's ``speculative_window``). ``compile``: static shapes (the whole
    cache read under a mask) through ``torch.compile``. ``stats``: filled with the passes made and
    tokens committed. ``corpus``: a corpus lookup (:class:`~argen.transformer.drafts.CorpusDrafts`)
    whose continuations of the committed tokens are drafted first, as point masses.
    """
    window = target.speculative_window if window is None else window
    if not isinstance(window, int) or not 1 <= window <= 256:
        raise ValueError(f"speculative window must be an int in [1, 256], got {window!r}")
    check_sampling(cfg_scale, temperature, top_k, top_p)
    state = start(model, text_ids, text_mask, target, uncond_ids=uncond_ids, uncond_mask=uncond_mask,
                  cfg_scale=cfg_scale, temperature=0.0, top_k=top_k, top_p=top_p, seeds=None, prefix=prefix,
                  max_len=max_len)  # temperature 0 here: no sequential draws to make; ours come below
    device = state.tokens.device
    (B, L), W, P = state.tokens.shape, window, state.n
    T = W + 1  # window positions: the last committed token's, then one per draft
    V = model.config.target_vocab_size
    scale, grammar, eos, fill = state.cfg_scale, state.grammar, target.eos_id, state.fill
    keys, r_all, u_all = _row_randomness(seeds, B, L + T, device, text_ids, text_mask)
    rows = torch.arange(B, device=device)
    steps = torch.arange(T, device=device)
    sites = site_keys(keys, torch.arange(L + T, device=device).expand(B, -1))  # drafts sit at positions < L + W
    spare = L + T  # a column of ``out`` and of the bigram table that takes the writes of masked entries

    out = F.pad(state.tokens, (0, T + 1), value=fill)  # the prefix is written
    gstate = state.grammar_state
    done = state.finished | (P >= L)
    end = torch.where(state.finished, P, L)  # a row's length: through its EOS, or L
    bigram = torch.full((B, V + 2), -1, dtype=torch.long, device=device)  # next token seen after an id
    last_in_state = None  # per row and grammar state: the token last written there (a legal guess)
    if grammar is not None:
        last_in_state = grammar.allowed.long().argmax(1).expand(B, -1).clone()
        last_in_state = torch.cat([last_in_state, last_in_state[:, :1]], 1)  # + a spare column
    if P > 1:
        bigram.scatter_(1, state.tokens[:, : P - 1], state.tokens[:, 1:P])
    n = torch.full((B,), P, dtype=torch.long, device=device)
    last = state.inputs[:, P] if P < L else state.tokens[:, -1]  # the decoder input at position n
    # First drafts: nothing computed yet, so point masses on the last token (a target id).
    drafts = torch.where(last < V, last, 0)[:, None].repeat(1, W)
    point_q = torch.ones(B, W, device=device)  # the q of point-mass drafts (never written in place)
    q_draft = point_q
    cand_ids = drafts[..., None].clone()
    cand_q = torch.ones(B, W, 1, device=device)
    passes, row_passes = 0, torch.zeros(B, dtype=torch.long, device=device)
    lookup = None if corpus is None else BatchDrafts(corpus, B)
    onehot_fill = torch.zeros(V, device=device)
    onehot_fill[fill] = 1.0
    has_features = state.has_features

    with inference(model):
        model.setup_cache(model.encode(state.text_ids, state.text_mask), state.text_mask, L, pack=not compile,
                          guided=scale is not None, slack=T)
        step = compiled(model, "decode_window") if compile else None
        if 0 < P < L:  # prefill BOS + prefix[:-1] at positions 0 .. P-1; the first window starts at P
            x = state.inputs[:, :P]
            pos = torch.arange(P, device=device).expand(B, P)
            feats = target.token_features(x, pos) if has_features else None
            model.decode_window(x, feats, pos, kv_len=P, cfg_scale=scale)
            passes += 1
        while not bool(done.all()):
            x = torch.cat([last[:, None], drafts], 1)  # (B, T)
            pos = n[:, None] + steps  # done rows sit at L.., which lands in the cache's slack slots
            feats = target.token_features(x, pos.clamp(max=L - 1)) if has_features else None  # past L: unused
            if step is not None:
                if device.type == "cuda":
                    torch.compiler.cudagraph_mark_step_begin()
                logits = step(x, feats, pos, None, scale)
            else:
                logits = model.decode_window(x, feats, pos, kv_len=int(pos.max()) + 1, cfg_scale=scale)
            logits = logits.float()
            passes += 1
            row_passes += ~done

            # p at every window position, along the draft prefix: grammar states and EOS advance on it.
            if grammar is not None:
                states = [gstate]
                for j in range(W):
                    states.append(grammar.step(states[-1], drafts[:, j]))
                states = torch.stack(states, 1)  # (B, T)
                logits = logits.masked_fill(~grammar.allowed[states], float("-inf"))
            p = token_probs(logits, temperature, top_k, top_p)
            if eos is not None:  # after an EOS in the prefix, only the fill token
                after = torch.cat([torch.zeros_like(drafts[:, :1], dtype=torch.bool),
                                   (drafts == eos).cummax(1).values], 1)
                p = torch.where(after[..., None], onehot_fill, p)

            # Verify: the first rejection ends the accepted run k; token k is the correction (or bonus).
            p_draft = p[:, :W].gather(-1, drafts[..., None]).squeeze(-1)
            ok = accept(p_draft, q_draft, r_all.gather(1, pos[:, :W]))
            k = ok.long().cumprod(1).sum(1)  # (B,)
            p_k = p[rows, k]  # (B, V)
            kq = k.clamp(max=W - 1)
            # scatter_add: a point-mass draft repeats its token over all K candidates, with weights 1, 0, ...
            q_k = torch.zeros_like(p_k).scatter_add_(1, cand_ids[rows, kq], cand_q[rows, kq])
            q_k = q_k * (k < W)[:, None]  # a bonus token has no draft to correct
            residual = (p_k - q_k).clamp_min(0)
            residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p_k)
            c = inverse_cdf(residual, u_all.gather(1, (n + k)[:, None]).squeeze(1))

            # Commit d_0 .. d_{k-1}, c for the rows still decoding.
            tokens = torch.cat([drafts, c[:, None]], 1).scatter(1, k[:, None], c[:, None])  # (B, T)
            take = (steps <= k[:, None]) & (pos < L) & ~done[:, None]
            out.scatter_(1, torch.where(take, pos, spare), tokens)
            bigram.scatter_(1, torch.where(take, x, V + 1), tokens)
            if grammar is not None:
                gstate = torch.where(done, gstate, grammar.step(states[rows, k], c))
                last_in_state.scatter_(1, torch.where(take, states, last_in_state.shape[1] - 1), tokens)
            if eos is not None:
                hit = take & (tokens == eos)
                first = torch.where(hit, pos, spare).min(1).values
                end = torch.where(hit.any(1), first + 1, end)
                done = done | hit.any(1)
            n = torch.where(done, n, n + k + 1).clamp(max=L)
            done = done | (n >= L)
            last = c

            # Next drafts: the corpus's continuation of the committed tokens where it has one; else
            # position n + i reads this pass's p at window index k + 1 + i where it exists, else a point
            # mass from the bigram table, chained from the previous draft.
            looked = None if lookup is None else lookup.propose(out.tolist(), n.tolist(), done.tolist(), W).to(device)
            covered = looked is not None and bool((looked >= 0).all())  # then no Jacobi draft is used
            src = k[:, None] + 1 + steps[:W]  # (B, W)
            fresh = src < T
            if covered:
                new = looked
            else:
                new, new_q, new_ids, new_cq = draw_drafts(p[:, 1:], sites.gather(1, n[:, None] + steps[:W]),
                                                          source=src.clamp(max=W) - 1)
            # With a grammar, every draft is walked along the new prefix: one it forbids there is
            # replaced by a point mass on the token this row last wrote in that grammar state.
            first_stale = 0 if grammar is not None or corpus is not None else W - int(k.max())
            if first_stale < W:  # (without a grammar or corpus, rows with shorter runs stay fresh)
                point_mass = ~fresh
                prev = new[:, first_stale - 1] if first_stale else c
                walk = gstate
                for i in range(first_stale, W):
                    if covered:
                        prev = new[:, i]
                    else:
                        guess = bigram.gather(1, prev[:, None]).squeeze(1)
                        guess = torch.where(guess >= 0, guess, prev)
                        prev = torch.where(fresh[:, i], new[:, i], guess)
                        if looked is not None:  # the corpus's continuation, where it has one
                            hit = looked[:, i] >= 0
                            prev = torch.where(hit, looked[:, i], prev)
                            point_mass[:, i] |= hit
                    if grammar is not None:
                        legal = grammar.allowed[walk, prev]
                        prev = torch.where(legal, prev, last_in_state[rows, walk])
                        point_mass[:, i] |= ~legal
                        walk = grammar.step(walk, prev)
                    new[:, i] = prev
                if covered:  # all point masses
                    new_q, new_ids, new_cq = point_q, new[..., None], point_q[..., None]
                else:
                    new_q = new_q.masked_fill(point_mass, 1.0)
                    point = torch.zeros_like(new_cq)
                    point[..., 0] = 1.0
                    new_cq = torch.where(point_mass[..., None], point, new_cq)
                    new_ids = torch.where(point_mass[..., None], new[..., None], new_ids)
            drafts, q_draft, cand_ids, cand_q = new, new_q, new_ids, new_cq
            if callback is not None:
                callback(int(n.clamp(max=L).min()), L)
    if stats is not None:
        stats.passes = passes
        stats.tokens = (end.clamp(max=L) - P).clamp_min(0).tolist()
        stats.row_passes = row_passes.tolist()
    length = max(int(end.max()), P) if eos is not None else L
    return out[:, :length]
