"""Parti-style encoder-decoder: a bidirectional text encoder and a causal decoder of target tokens.

The decoder writes *target tokens* of any :class:`argen.targets.TargetTokenizer` (image tokens,
SVG path tokens); target-specific structure enters only through extra embedding tables indexed by
the target's ``token_features`` (image row/column, an SVG point's x/y), so the model never
branches on which target it writes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from argen import presets
from argen.nn import (
    MLP,
    NORMS,
    CrossAttention,
    KVCache,
    Linear,
    PackedWeight,
    PositionalEmbedding,
    SelfAttention,
    make_norm,
    reusable,
    tensor_state,
)


@dataclass
class TransformerConfig:
    text_vocab_size: int = 16384
    target_vocab_size: int = 8192
    max_text_len: int = 128
    max_target_len: int = 1024
    target_feature_sizes: tuple[int, ...] = ()  # extra input embedding tables (see argen/targets.py)
    d_model: int = 1024
    n_heads: int = 16
    enc_layers: int = 12
    dec_layers: int = 12
    d_ff: int = 4096
    dropout: float = 0.0
    norm: str = "layernorm"
    bias: bool = True
    tie_embeddings: bool = True  # output projection shares the target embedding (as BART, T5)
    checkpointing: bool = False  # activation checkpointing of every block while training
    # The output layer also scores each target id by its feature embeddings (an SVG point by its x and
    # y tables), so ids that share a coordinate share what is learnt about it. Needs features that
    # depend on the id alone (``TargetTokenizer.id_features``).
    feature_head: bool = False

    def __post_init__(self):
        self.target_feature_sizes = tuple(int(n) for n in self.target_feature_sizes)
        for name in ("text_vocab_size", "target_vocab_size", "max_text_len", "max_target_len",
                     "d_model", "n_heads", "enc_layers", "dec_layers", "d_ff"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TransformerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if any(n < 1 for n in self.target_feature_sizes):
            raise ValueError(f"TransformerConfig.target_feature_sizes must be positive, "
                             f"got {self.target_feature_sizes}")
        if self.d_model % self.n_heads:
            raise ValueError(f"TransformerConfig.d_model ({self.d_model}) must be divisible by "
                             f"n_heads ({self.n_heads})")
        if self.norm not in NORMS:
            raise ValueError(f"TransformerConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if self.feature_head and not self.target_feature_sizes:
            raise ValueError("TransformerConfig.feature_head needs target_feature_sizes (a target with features)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples become lists; the constructor turns them back)."""
        d = dataclasses.asdict(self)
        d["target_feature_sizes"] = list(self.target_feature_sizes)
        return d


_PARTI = dict(text_vocab_size=16384, target_vocab_size=8192, max_text_len=128, max_target_len=1024)
PRESETS: dict[str, dict] = {
    # Tiny, for CPU demos and tests; the recipe overrides vocab sizes and lengths to its tokenizers.
    "demo": dict(text_vocab_size=1024, target_vocab_size=512, max_text_len=32, max_target_len=256,
                 d_model=256, n_heads=4, enc_layers=2, dec_layers=4, d_ff=1024),
    # Parti (Yu et al. 2022), Table 1: enc layers / dec layers / dim / MLP / heads.
    "parti-350m": dict(_PARTI, enc_layers=12, dec_layers=12, d_model=1024, d_ff=4096, n_heads=16),
    "parti-750m": dict(_PARTI, enc_layers=12, dec_layers=36, d_model=1024, d_ff=4096, n_heads=16),
    "parti-3b": dict(_PARTI, enc_layers=12, dec_layers=36, d_model=2048, d_ff=8192, n_heads=32),
    "parti-20b": dict(_PARTI, enc_layers=16, dec_layers=64, d_model=4096, d_ff=16384, n_heads=64),
}


def config_from_preset(name: str, **overrides) -> TransformerConfig:
    """The named preset's config with ``overrides`` applied (e.g. ``target_vocab_size=1024``)."""
    return presets.config_from_preset(TransformerConfig, PRESETS, name, "transformer", **overrides)


class EncoderBlock(nn.Module):
    """Pre-norm bidirectional self-attention + MLP."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.norm1, self.norm2 = make_norm(c.norm, c.d_model), make_norm(c.norm, c.d_model)
        self.attn = SelfAttention(c.d_model, c.n_heads, bias=c.bias, dropout=c.dropout)
        self.mlp = MLP(c.d_model, c.d_ff, bias=c.bias, dropout=c.dropout)
        self.drop = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask=mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class DecoderBlock(nn.Module):
    """Pre-norm causal self-attention, cross-attention to the text memory, MLP."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (make_norm(c.norm, c.d_model) for _ in range(3))
        self.self_attn = SelfAttention(c.d_model, c.n_heads, bias=c.bias, dropout=c.dropout)
        self.cross_attn = CrossAttention(c.d_model, c.n_heads, bias=c.bias, dropout=c.dropout)
        self.mlp = MLP(c.d_model, c.d_ff, bias=c.bias, dropout=c.dropout)
        self.drop = nn.Dropout(c.dropout) if c.dropout > 0 else None  # None: no module call per decode step

    def _residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + (y if self.drop is None else self.drop(y))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, memory_mask: torch.Tensor | None,
                self_mask: torch.Tensor | None = None, input_pos: torch.Tensor | None = None,
                kv_len: int | None = None, copies: int = 1) -> torch.Tensor:
        """``copies > 1``: ``x`` holds the rows shared by ``copies`` memory groups (CFG's cond and
        uncond rows read the same tokens), stacked as copies after self-attention."""
        causal = input_pos is None  # training / uncached: queries and keys are the same positions
        x = self._residual(x, self.self_attn(self.norm1(x), mask=self_mask, input_pos=input_pos, kv_len=kv_len,
                                             is_causal=causal))
        if copies > 1:
            # Guided decoding, first layer: cond and uncond rows read the same tokens, so the
            # self-attention above ran (and cached K/V) once for both; they part here, where the
            # memory differs. Later layers see different inputs and run on all 2B rows.
            x = x.repeat(copies, 1, 1)
        x = self._residual(x, self.cross_attn(self.norm2(x), memory, memory_mask))
        return self._residual(x, self.mlp(self.norm3(x)))


def _key_mask(text_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) validity -> (B, 1, 1, S) boolean attention mask.

    A row with no valid token (an empty caption) attends to its position 0 instead of nothing,
    which would give NaN; that slot then acts as a fixed "no text" token.
    """
    text_mask = text_mask.bool()
    empty = ~text_mask.any(dim=1)
    if empty.any():
        text_mask = text_mask.clone()
        text_mask[:, 0] |= empty
    return text_mask[:, None, None, :]


class EncoderDecoder(nn.Module):
    """Text tokens in, logits over target tokens out.

    Training: ``forward(text_ids, text_mask, inputs, features)`` with ``inputs =
    shift_right(targets)``. Sampling: ``encode`` once, ``setup_cache``, then ``decode_step``
    per token (see :mod:`argen.transformer.sampling`).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        self.text_emb = nn.Embedding(c.text_vocab_size, c.d_model)
        self.text_pos = PositionalEmbedding(c.max_text_len, c.d_model)
        self.encoder = nn.ModuleList(EncoderBlock(c) for _ in range(c.enc_layers))
        self.enc_norm = make_norm(c.norm, c.d_model)
        self.target_emb = nn.Embedding(c.target_vocab_size + 1, c.d_model)  # last row: BOS
        self.target_pos = PositionalEmbedding(c.max_target_len, c.d_model)
        self.feature_emb = nn.ModuleList(nn.Embedding(n, c.d_model) for n in c.target_feature_sizes)
        self.decoder = nn.ModuleList(DecoderBlock(c) for _ in range(c.dec_layers))
        self.dec_norm = make_norm(c.norm, c.d_model)
        self.head = None if c.tie_embeddings else nn.Linear(c.d_model, c.target_vocab_size, bias=False)
        if c.feature_head:  # each target id's feature values, set from the target by set_id_features
            self.register_buffer("id_features", torch.zeros(c.target_vocab_size, len(c.target_feature_sizes),
                                                            dtype=torch.long))
        self.emb_drop = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        self.register_buffer("_memory_bias", None, persistent=False)  # set by setup_cache
        self._guided = False  # set by setup_cache: decode_step's rows are shared by [cond; uncond]
        self._packed_head: PackedWeight | None = None
        self._parked_head: PackedWeight | None = None  # kept between generations (park)
        self._summed_rows: tuple[tuple, torch.Tensor] | None = None  # feature_head's rows for no-grad calls
        self.apply(self._init_weights)
        # GPT-2: scale residual-branch outputs by depth so the residual stream keeps its size.
        for name, p in self.named_parameters():
            if name.endswith(("out.weight", "mlp.proj.weight")):
                nn.init.normal_(p, std=0.02 / (2 * max(c.enc_layers, c.dec_layers)) ** 0.5)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    # -- bookkeeping --------------------------------------------------------------------------
    @property
    def bos_id(self) -> int:
        """Decoder-input id of begin-of-sequence; never a target id."""
        return self.config.target_vocab_size

    def shift_right(self, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs: ``[BOS] + targets[:, :-1]``."""
        bos = targets.new_full((targets.shape[0], 1), self.bos_id)
        return torch.cat([bos, targets[:, :-1]], dim=1)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count (works on the meta device); optionally without embedding tables."""
        params = {id(p): p for p in self.parameters()}
        if exclude_embeddings:
            for m in self.modules():
                if isinstance(m, nn.Embedding):
                    params.pop(id(m.weight), None)
        return sum(p.numel() for p in params.values())

    def _blocks(self, blocks: nn.ModuleList, x: torch.Tensor, *args) -> torch.Tensor:
        use_ckpt = self.config.checkpointing and self.training and torch.is_grad_enabled()
        for block in blocks:
            x = checkpoint(block, x, *args, use_reentrant=False) if use_ckpt else block(x, *args)
        return x

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """(B, S) text ids and validity mask -> (B, S, D) memory. Padded slots never leak."""
        if text_ids.dim() != 2 or text_mask.shape != text_ids.shape:
            raise ValueError(f"text_ids and text_mask must both be (B, S); got {tuple(text_ids.shape)} "
                             f"and {tuple(text_mask.shape)}")
        S = text_ids.shape[1]
        if S > self.config.max_text_len:
            raise ValueError(f"text length {S} exceeds max_text_len {self.config.max_text_len}")
        pos = torch.arange(S, device=text_ids.device)
        x = self.emb_drop(self.text_emb(text_ids) + self.text_pos(pos))
        x = self._blocks(self.encoder, x, _key_mask(text_mask))
        return self.enc_norm(x)

    # -- decoder ------------------------------------------------------------------------------
    def embed_targets(self, inputs: torch.Tensor, features: torch.Tensor | None,
                      positions: torch.Tensor) -> torch.Tensor:
        """Token + position + the target's feature embeddings (e.g. image row/col, SVG x/y)."""
        x = self.target_emb(inputs) + self.target_pos(positions)
        n_feat = len(self.feature_emb)
        if n_feat:
            if features is None or features.shape[-1] != n_feat or features.shape[:-1] != inputs.shape:
                got = None if features is None else tuple(features.shape)
                raise ValueError(f"features must be (B, L, {n_feat}) matching inputs {tuple(inputs.shape)}, "
                                 f"got {got}")
            for f, table in enumerate(self.feature_emb):
                x = x + table(features[..., f])
        elif features is not None and features.shape[-1] != 0:
            raise ValueError(f"this model has no target feature tables but got features {tuple(features.shape)}")
        return x

    @torch.no_grad()
    def set_id_features(self, features: torch.Tensor) -> None:
        """(target_vocab_size, n_features) feature values of every target id, for ``feature_head``."""
        if not self.config.feature_head:
            raise ValueError("set_id_features is for a model with feature_head=True")
        if features.shape != self.id_features.shape:
            raise ValueError(f"id features must be {tuple(self.id_features.shape)}, got {tuple(features.shape)}")
        self.id_features.copy_(features)

    def output_weight(self) -> torch.Tensor:
        """(target_vocab_size, D): the rows the final hidden state is scored against.

        With ``feature_head`` they are a sum of tables; without autograd (decoding, scoring) the sum is
        made once and reused while the tables' version counters show them unchanged, so a decode step
        does not rebuild a (V, D) matrix.
        """
        w = self.head.weight if self.head is not None else self.target_emb.weight[: self.config.target_vocab_size]
        if not self.config.feature_head:
            return w
        parts = (w, *(t.weight for t in self.feature_emb), self.id_features)
        reuse = not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        key = tuple(map(tensor_state, parts)) if reuse else None
        if key is not None and self._summed_rows is not None and self._summed_rows[0] == key:
            return self._summed_rows[1]
        for f, table in enumerate(self.feature_emb):
            w = w + table(self.id_features[:, f])
        if key is not None:
            self._summed_rows = (key, w)
        return w

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final hidden states (already normed) -> logits over the target vocabulary."""
        if self._packed_head is not None:
            y = self._packed_head.linear(hidden, None)
            if y is not None:
                return y
        return F.linear(hidden, self.output_weight())

    def decode(self, memory: torch.Tensor, text_mask: torch.Tensor, inputs: torch.Tensor,
               features: torch.Tensor | None = None) -> torch.Tensor:
        """Uncached causal decoding of all positions: (B, L) inputs -> (B, L, D) normed hidden."""
        L = inputs.shape[1]
        if L > self.config.max_target_len:
            raise ValueError(f"target length {L} exceeds max_target_len {self.config.max_target_len}")
        x = self.emb_drop(self.embed_targets(inputs, features, torch.arange(L, device=inputs.device)))
        x = self._blocks(self.decoder, x, memory, _key_mask(text_mask))
        return self.dec_norm(x)

    def forward(self, text_ids: torch.Tensor, text_mask: torch.Tensor, inputs: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: logits (B, L, target_vocab_size) for decoder ``inputs`` (B, L)."""
        memory = self.encode(text_ids, text_mask)
        return self.logits(self.decode(memory, text_mask, inputs, features))

    # -- cached decoding ----------------------------------------------------------------------
    @torch.no_grad()
    def setup_cache(self, memory: torch.Tensor, text_mask: torch.Tensor, max_len: int, pack: bool = False,
                    guided: bool = False, slack: int = 0) -> None:
        """Prepare decoding of ``max_len`` positions for the rows of ``memory`` (B, S, D).

        Self-attention gets a static (B, H, max_len, Dh) cache per layer; cross-attention K/V of
        the memory is projected here, once, instead of every step. Buffers are reused across calls
        when the shapes agree, so their addresses stay fixed for a compiled decode step.
        ``guided``: ``memory`` rows are [cond; uncond] halves that will read the same tokens, so
        :meth:`decode_step` takes B/2 token rows (see there). ``pack`` prepacks the decoder's
        weights for CPU inference (see :class:`argen.nn.PackedWeight`), reusing those an earlier
        generation parked (:meth:`park`) where they still serve; :meth:`unpack` frees them.
        ``slack`` extra cache slots past ``max_len`` take the writes of window positions that run off
        the end (:meth:`decode_window`), so they never overwrite a real position's keys.
        """
        if max_len > self.config.max_target_len:
            raise ValueError(f"max_len {max_len} exceeds max_target_len {self.config.max_target_len}")
        B, device, dtype = memory.shape[0], memory.device, memory.dtype
        if guided and B % 2:
            raise ValueError(f"guided decoding needs [cond; uncond] memory rows, got an odd count {B}")
        c = self.config
        self_rows = [B // 2 if guided and i == 0 else B for i in range(c.dec_layers)]
        for block, rows in zip(self.decoder, self_rows):
            attn = block.self_attn
            if attn.cache is None or not attn.cache.matches(rows, max_len + slack, dtype, device):
                attn.cache = KVCache(rows, c.n_heads, max_len + slack, c.d_model // c.n_heads, dtype, device)
            block.cross_attn.fill_cross_cache(memory)
        self._guided = guided
        mask = _key_mask(text_mask.to(device))
        # Additive float mask made once here, not per step; reused in place for a compiled step.
        bias = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill_(~mask, float("-inf"))
        old = self._memory_bias
        if (old is not None and old.shape == bias.shape and old.dtype == dtype and old.device == device
                and reusable(old)):
            old.copy_(bias)
        else:
            self._memory_bias = bias
        if pack:  # CPU decoding: weights prepacked once for oneDNN, not re-packed by every matmul
            for block, rows in zip(self.decoder, self_rows):
                for name, m in block.named_modules():
                    if isinstance(m, Linear):
                        m.pack(rows if name.startswith("self_attn.") else B)
            head, rows = self.output_weight(), B // 2 if guided else B
            self._packed_head = PackedWeight.reuse(self._packed_head or self._parked_head, head, rows)
            self._parked_head = None
        else:  # a compiled or GPU generation: no packs from an earlier eager one in its graph
            self.unpack()

    def park(self) -> None:
        """Stop decoding from the packed copies, keeping them for the next ``setup_cache(pack=True)``,
        which reuses those that still serve (the weights unchanged, the same batch rows)."""
        for m in self.decoder.modules():
            if isinstance(m, Linear):
                m.park()
        self._parked_head, self._packed_head = self._packed_head or self._parked_head, None

    def unpack(self) -> None:
        """Drop the prepacked weight copies made by ``setup_cache(..., pack=True)``, parked ones too."""
        for m in self.decoder.modules():
            if isinstance(m, Linear):
                m.packed = m.parked = None
        self._packed_head = self._parked_head = None

    def clear_cache(self) -> None:
        """Free the decoding buffers and packed weights."""
        for block in self.decoder:
            block.self_attn.cache = None
            block.cross_attn.cache = None
        self._memory_bias = None
        self._summed_rows = None
        self.unpack()

    def decode_step(self, inputs: torch.Tensor, features: torch.Tensor | None, input_pos: torch.Tensor,
                    kv_len: int | None = None, cfg_scale: float | None = None) -> torch.Tensor:
        """Logits (B, V) of the token after ``inputs`` (B, T) placed at positions ``input_pos`` (T,).

        T > 1 prefills several positions in one pass. With
        ``kv_len`` (eager), the positions are the last T of the filled prefix, ``kv_len - T .. kv_len - 1``,
        and attention reads only the first ``kv_len`` cache slots; without it (static shapes for
        ``torch.compile``), any positions may be given and attention reads the whole cache under a
        position mask.

        After ``setup_cache(..., guided=True)``, ``cfg_scale`` is required and ``inputs`` are the
        B token rows shared by the 2B [cond; uncond] memory rows: the first layer's self-attention
        sees only tokens, so it runs (and caches) once for both halves, which are split at its
        cross-attention. The result is the guided logits (B, V), see :meth:`guided_logits`.
        """
        if self._memory_bias is None:
            raise RuntimeError("decode_step needs setup_cache(memory, text_mask, max_len) first")
        if (cfg_scale is not None) != self._guided:
            raise ValueError("decode_step takes cfg_scale exactly when the cache was set up with guided=True")
        x = self.embed_targets(inputs, features, input_pos)
        if kv_len is not None and inputs.shape[1] == 1:
            mask = None  # one query over exactly the filled prefix: nothing to hide
        else:
            n_keys = kv_len if kv_len is not None else self.decoder[0].self_attn.cache.k.shape[2]
            # bottom-right aligned causal mask: query at position p sees keys 0..p
            mask = torch.arange(n_keys, device=inputs.device) <= input_pos[:, None]
        for i, block in enumerate(self.decoder):
            copies = 2 if self._guided and i == 0 else 1
            x = block(x, None, self._memory_bias, mask, input_pos, kv_len, copies)
        hidden = self.dec_norm(x[:, -1])
        return self.logits(hidden) if cfg_scale is None else self.guided_logits(hidden, cfg_scale)

    def guided_logits(self, hidden: torch.Tensor, cfg_scale: float) -> torch.Tensor:
        """Classifier-free guidance ``u + s * (c - u)`` for normed states (2B, D) or (2B, T, D) of
        [cond; uncond] rows.

        The head is affine and the weights (1 - s, s) sum to one, so mixing the states before the
        head equals mixing the logits after it, at half the cost of the largest matmul.
        """
        B = hidden.shape[0] // 2
        return self.logits(torch.lerp(hidden[B:], hidden[:B], cfg_scale))

    def decode_window(self, inputs: torch.Tensor, features: torch.Tensor | None, input_pos: torch.Tensor,
                      kv_len: int | None = None, cfg_scale: float | None = None) -> torch.Tensor:
        """Logits (B, T, V) after each of ``inputs`` (B, T), row ``b`` placed at its own ``input_pos[b]``.

        The verify pass of speculative decoding: rows sit at different committed lengths, so each
        writes its keys at its own positions and its queries see keys ``<= `` their position. Cache
        slots past that hold stale drafts and are masked out, so nothing is ever rolled back.
        With ``kv_len`` (eager) attention reads the first ``kv_len`` slots (``kv_len > input_pos.max()``);
        without it, the whole cache (static shapes). Positions past ``max_target_len`` (a window running
        off the end; their outputs are unused) are embedded at the last position and written to the
        slack slots of ``setup_cache``. Guidance as in :meth:`decode_step`.
        """
        if self._memory_bias is None:
            raise RuntimeError("decode_window needs setup_cache(memory, text_mask, max_len) first")
        if (cfg_scale is not None) != self._guided:
            raise ValueError("decode_window takes cfg_scale exactly when the cache was set up with guided=True")
        x = self.embed_targets(inputs, features, input_pos.clamp(max=self.config.max_target_len - 1))
        n_keys = kv_len if kv_len is not None else self.decoder[0].self_attn.cache.k.shape[2]
        if inputs.shape[0] == 1 and kv_len is not None and int(input_pos[0, -1]) == kv_len - 1:
            # One row (batch-1 sampling): its window is the last T of the filled prefix, so the cache
            # takes a slice write and every layer one (T, K) mask, as in decode_step's prefill.
            input_pos = input_pos[0]
            mask = torch.arange(n_keys, device=inputs.device) <= input_pos[:, None]
            pos2, mask2 = input_pos, mask
        else:
            mask = (torch.arange(n_keys, device=inputs.device) <= input_pos[..., None])[:, None]  # (B, 1, T, K)
            pos2, mask2 = (input_pos.repeat(2, 1), mask.repeat(2, 1, 1, 1)) if self._guided else (input_pos, mask)
        for i, block in enumerate(self.decoder):
            first = i == 0
            copies = 2 if self._guided and first else 1
            x = block(x, None, self._memory_bias, mask if first else mask2, input_pos if first else pos2, kv_len,
                      copies)
        hidden = self.dec_norm(x)
        return self.logits(hidden) if cfg_scale is None else self.guided_logits(hidden, cfg_scale)
