"""Transformer building blocks shared by every argen model: attention, MLP, norms, positions.

Attention lives here and nowhere else: :class:`SelfAttention` (encoders, the causal decoder with a
static KV cache) and :class:`CrossAttention` (memory K/V projected once per prompt) share one kernel
function, :func:`attend`, so the training path and the sampling path run the same code, and an
argument that does not apply to a kind of attention is an error rather than ignored.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

NORMS = ("layernorm", "rmsnorm")


@functools.cache
def _apex_norms() -> dict[str, type] | None:
    """Apex's fused norm classes when Apex is importable and CUDA is present, else ``None``."""
    if not torch.cuda.is_available():
        return None
    try:  # function-level: Apex is optional (CUDA builds only) and probed once
        from apex.normalization import FusedLayerNorm, FusedRMSNorm
    except Exception:  # not installed, or an unrelated PyPI "apex", or a broken build
        return None
    return {"layernorm": FusedLayerNorm, "rmsnorm": FusedRMSNorm}


@functools.cache
def _log_norm_choice(kind: str, source: str) -> None:
    logger.info("argen norms: %s from %s", kind, source)


def make_norm(kind: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """A LayerNorm or RMSNorm over the last dim: Apex's fused kernel when usable, else native.

    Both variants hold the same parameters (``weight`` and, for LayerNorm, ``bias``), so
    checkpoints move freely between machines with and without Apex.
    """
    if kind not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
    fused = _apex_norms()
    if fused is not None:
        _log_norm_choice(kind, "apex (fused)")
        return fused[kind](dim, eps=eps)
    _log_norm_choice(kind, "torch (native)")
    return nn.LayerNorm(dim, eps=eps) if kind == "layernorm" else nn.RMSNorm(dim, eps=eps)


def tensor_state(t: torch.Tensor) -> tuple:
    """What identifies a tensor's current contents cheaply: storage, layout, dtype and version counter
    (an in-place write, such as an optimizer step, bumps the version)."""
    return t.data_ptr(), t.shape, t.stride(), t.dtype, t._version


class PackedWeight:
    """A oneDNN-prepacked copy of a linear layer's weight, for CPU inference.

    PyTorch's default CPU GEMM re-packs the weight on every call, which dominates the few-row
    matmuls of a decode step, so :meth:`EncoderDecoder.setup_cache` packs the decoder's weights, and
    later generations reuse the packs while they still fit (:meth:`serves`; the gain: BENCHMARKS.md,
    "Sampling"; ``benchmarks/sampling.py``). The copy is
    used only without autograd, on CPU inputs of its dtype, and only while the weight's version
    counter shows it unchanged since packing, so an optimizer step or ``load_state_dict`` can never
    leave a stale copy in use. The two ops are the
    ones ``torch.compile``'s CPU weight-freezing pass emits; builds without them fall back to
    ``F.linear``.
    """

    def __init__(self, weight: torch.Tensor, rows: int):
        self.source, self.version, self.rows, self.state = weight, weight._version, rows, tensor_state(weight)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)

    @classmethod
    def reuse(cls, kept: PackedWeight | None, weight: torch.Tensor, rows: int) -> PackedWeight | None:
        """``kept`` where it still serves ``weight`` for ``rows``, else a new packed copy (or ``None``)."""
        return kept if kept is not None and kept.serves(weight, rows) else cls.create(weight, rows)

    def serves(self, weight: torch.Tensor, rows: int) -> bool:
        """Whether this copy is ``weight`` as it is now (same storage, shape and version), packed for
        ``rows``: then a new generation keeps it instead of packing again."""
        return rows == self.rows and tensor_state(weight) == self.state

    @classmethod
    def create(cls, weight: torch.Tensor, rows: int) -> PackedWeight | None:
        """The packed copy, or ``None`` where oneDNN cannot serve (not CPU, other dtype, no oneDNN)."""
        if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.bfloat16):
            return None
        if weight.numel() < 1 << 14:  # tiny layers: oneDNN's call overhead outweighs the repacking saved
            return None
        if not torch.backends.mkldnn.is_available():
            return None
        try:
            packed = cls(weight, rows)
            torch.ops.mkldnn._linear_pointwise(weight.new_zeros(1, weight.shape[1]), packed.packed, None,
                                               "none", [], "")  # both ops exist and agree on the format
            return packed
        except (RuntimeError, AttributeError):  # an op missing from, or changed in, this PyTorch build
            return None

    def linear(self, x: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False) -> torch.Tensor | None:
        """``x @ W.T + bias`` (then the exact GELU, fused) from the packed copy, or ``None`` when it
        must not be used."""
        if (torch.is_grad_enabled() or x.dtype != self.packed.dtype or not x.is_cpu
                or self.source._version != self.version):
            return None
        attr, algorithm = ("gelu", "none") if gelu else ("none", "")  # "none": erf GELU, not tanh
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, attr, [], algorithm)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) that can run from a :class:`PackedWeight`.

    ``gelu=True`` applies the exact GELU to the output, fused into the packed matmul.
    """

    def __init__(self, *args, gelu: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.gelu = gelu
        self.packed: PackedWeight | None = None  # in use: forward runs from it
        self.parked: PackedWeight | None = None  # kept between generations, not used

    def pack(self, rows: int) -> None:
        """Run from a packed copy for ``rows``-row inputs: the parked one where it still serves."""
        self.packed, self.parked = PackedWeight.reuse(self.packed or self.parked, self.weight, rows), None

    def park(self) -> None:
        """Stop running from the packed copy but keep it for the next :meth:`pack`: a pack made for a
        decode step's few rows is slow for the many rows of a training or scoring pass."""
        self.parked, self.packed = self.packed or self.parked, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            y = self.packed.linear(x, self.bias, self.gelu)
            if y is not None:
                return y
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y) if self.gelu else y


class PositionalEmbedding(nn.Embedding):
    """Learned absolute positions (as in Parti and BART), indexed by a (T,) position tensor.

    2D image positions and IconShop's x/y embeddings are not here: they come from the target
    tokenizer's feature tables, so the model never knows which target it writes.
    """

    def __init__(self, max_len: int, dim: int):
        super().__init__(max_len, dim)
        self.max_len = max_len


def reusable(buffer: torch.Tensor) -> bool:
    """False for a buffer made under ``torch.inference_mode`` when we are now outside it: such
    tensors refuse in-place writes there (e.g. sampling in a Lightning validation step, then later)."""
    return torch.is_inference_mode_enabled() or not buffer.is_inference()


class KVCache(nn.Module):
    """A static (B, H, T_max, Dh) key/value buffer pair, written in place at ``input_pos``.

    Allocated once per generation and never grown, so a decode step does no ``torch.cat`` and the
    buffers keep fixed addresses (what CUDA graphs need). Cross-attention reuses the same class
    to hold the memory K/V computed once per prompt.
    """

    def __init__(self, batch: int, n_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str | None = None):
        super().__init__()
        shape = (batch, n_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def matches(self, batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> bool:
        """Whether this cache can be reused in place for a new generation of that shape."""
        return (self.k.shape[0] == batch and self.k.shape[2] == max_len and self.k.dtype == dtype
                and self.k.device == device and reusable(self.k))

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               start: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v`` (B, H, T, Dh) at positions ``input_pos`` (T,) or (B, T); return the full buffers.

        ``start``: ``input_pos`` is known to be ``start .. start + T - 1`` (eager decoding), so a
        slice copy does the write, with less per-call overhead than ``index_copy_``.
        """
        if input_pos.dim() == 2:  # (B, T): each row writes at its own positions (speculative decoding)
            rows = torch.arange(k.shape[0], device=k.device)[:, None]
            self.k[rows, :, input_pos] = k.transpose(1, 2)
            self.v[rows, :, input_pos] = v.transpose(1, 2)
        elif start is not None:
            T = k.shape[2]
            self.k.narrow(2, start, T).copy_(k)
            self.v.narrow(2, start, T).copy_(v)
        else:
            self.k.index_copy_(2, input_pos, k)
            self.v.index_copy_(2, input_pos, v)
        return self.k, self.v


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, *,
           is_causal: bool = False, dropout: float = 0.0, cache_read: bool = False) -> torch.Tensor:
    """The one attention kernel: queries (B, H, Tq, Dh) over keys/values (B, H, Tk, Dh) -> (B, H, Tq, Dh).

    ``mask`` is boolean (True = may attend) or additive float, broadcastable to (B, H, Tq, Tk). SDPA's
    ``is_causal`` is top-left aligned, so it is only right when queries and keys are the same
    positions (training, uncached decoding); cached decoding passes an explicit mask instead.

    ``cache_read``: one query per row reads a filled cache prefix with nothing to hide, the eager
    decode step. On CPU in float32 that runs as a matrix-vector product per head instead of SDPA's
    blocked kernel: a late step is bound by reading the cache, and ``k @ q`` reads it faster once the
    prefix is long (BENCHMARKS.md, "One decode step's attention"; ``benchmarks/attention.py``). Only
    self-attention asks for it: over cross-attention's short text memory the blocked kernel is as fast.
    """
    if cache_read and q.shape[2] == 1 and mask is None and dropout == 0.0 and q.is_cpu and q.dtype == torch.float32:
        return _one_query_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout)


def _one_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of one query per row, (B, H, 1, Dh), over a cache prefix (B, H, S, Dh): two matmuls."""
    scores = torch.matmul(k, q.transpose(-1, -2) * q.shape[-1] ** -0.5).squeeze(-1)  # (B, H, S)
    return torch.matmul(scores.softmax(dim=-1).unsqueeze(-2), v)


class _Heads(nn.Module):
    """What self- and cross-attention share: the head split and the output projection."""

    def __init__(self, d_model: int, n_heads: int, bias: bool, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_heads, self.head_dim, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.out = Linear(d_model, d_model, bias=bias)
        self.cache: KVCache | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, Dh) as a view."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, H, T, Dh) -> the output projection of (B, T, D)."""
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, self.d_model))

    @property
    def _dropout_p(self) -> float:
        return self.dropout if self.training else 0.0


class SelfAttention(_Heads):
    """Multi-head self-attention with one fused QKV projection (encoders, the decoder, the VQGAN).

    Without ``input_pos`` it attends over ``x`` itself (``is_causal`` for a decoder's training or
    uncached pass). With ``input_pos`` (cached decoding, after a :class:`KVCache` is set as
    ``self.cache``) the new keys/values are written there and the queries read the cache.
    """

    def __init__(self, d_model: int, n_heads: int, *, bias: bool = True, dropout: float = 0.0):
        super().__init__(d_model, n_heads, bias, dropout)
        self.qkv = Linear(d_model, 3 * d_model, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, is_causal: bool = False,
                input_pos: torch.Tensor | None = None, kv_len: int | None = None) -> torch.Tensor:
        """``kv_len`` (eager decoding): ``input_pos`` is the last T of the filled prefix
        ``kv_len - T .. kv_len - 1``, and only that prefix is read; without it (static shapes for
        ``torch.compile``) the whole cache is read under ``mask``."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if input_pos is None:
            if kv_len is not None:
                raise ValueError("kv_len applies to cached decoding only: give input_pos too")
            return self._merge(attend(q, k, v, mask, is_causal=is_causal, dropout=self._dropout_p))
        if is_causal:
            raise ValueError("is_causal is for uncached passes: cached decoding passes an explicit mask "
                             "(SDPA's causal mask is top-left aligned, wrong for queries after a cached prefix)")
        if self.cache is None:
            raise ValueError("input_pos given but no KV cache is set up (call setup_cache first)")
        # eager with shared positions kv_len-T .. kv_len-1: a slice write; per-row (B, T) positions: indexed
        start = None if kv_len is None or input_pos.dim() == 2 else kv_len - T
        k, v = self.cache.update(input_pos, k, v, start)
        if kv_len is not None:
            k, v = k[:, :, :kv_len], v[:, :, :kv_len]  # attend to the filled prefix only
        # One query over exactly the filled prefix, eager, in eval: the GEMV path of attend().
        one_query = T == 1 and kv_len is not None and mask is None and not self.training
        return self._merge(attend(q, k, v, mask, dropout=self._dropout_p, cache_read=one_query))


class CrossAttention(_Heads):
    """Multi-head cross-attention: queries from ``x``, keys/values from a ``context`` (the text memory).

    For decoding, :meth:`fill_cross_cache` projects the memory's keys/values once per prompt and
    keeps them in ``self.cache``; ``forward(x)`` without a context then reads them, so a decode step
    never re-projects the memory.
    """

    def __init__(self, d_model: int, n_heads: int, *, bias: bool = True, dropout: float = 0.0):
        super().__init__(d_model, n_heads, bias, dropout)
        self.q = Linear(d_model, d_model, bias=bias)
        self.kv = Linear(d_model, 2 * d_model, bias=bias)

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``context`` (B, S, D), each (B, H, S, Dh)."""
        k, v = self.kv(context).split(self.d_model, dim=-1)
        return self._heads(k), self._heads(v)

    @torch.no_grad()
    def fill_cross_cache(self, context: torch.Tensor) -> None:
        """Project ``context`` once and keep it, reusing the buffers when the shapes still fit."""
        B, S, _ = context.shape
        if self.cache is None or not self.cache.matches(B, S, context.dtype, context.device):
            self.cache = KVCache(B, self.n_heads, S, self.head_dim, context.dtype, context.device)
        k, v = self.project_kv(context)
        self.cache.k.copy_(k)
        self.cache.v.copy_(v)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if context is not None:
            k, v = self.project_kv(context)
        elif self.cache is not None:
            k, v = self.cache.k, self.cache.v
        else:
            raise ValueError("cross-attention needs a context or a filled cross cache")
        return self._merge(attend(self._heads(self.q(x)), k, v, mask, dropout=self._dropout_p))


class MLP(nn.Module):
    """Position-wise feed-forward: Linear -> GELU -> Linear (Parti / BART style)."""

    def __init__(self, d_model: int, d_ff: int, *, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.fc = Linear(d_model, d_ff, bias=bias, gelu=True)
        self.proj = Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.proj(h if self.drop is None else self.drop(h))
