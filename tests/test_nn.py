"""argen.nn: attention (self, causal, cached, cross), MLP, norms."""

import logging
import math

import pytest
import torch
from torch import nn

from argen.nn import MLP, CrossAttention, KVCache, Linear, PositionalEmbedding, SelfAttention, attend, make_norm

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


def reference_attention(q, k, v, mask=None):
    """Plain softmax(QK^T / sqrt(d) + mask) V, to check SDPA usage against."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def split_heads(x, h):
    B, T, D = x.shape
    return x.view(B, T, h, D // h).transpose(1, 2)


@pytest.fixture
def attn():
    torch.manual_seed(0)
    return SelfAttention(32, 4).eval()


def test_self_attention_matches_reference_with_padding_mask(attn):
    x = torch.randn(2, 5, 32)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]
    q, k, v = (split_heads(t, 4) for t in attn.qkv(x).split(32, -1))
    want = attn.out(reference_attention(q, k, v, mask).transpose(1, 2).reshape(2, 5, 32))
    torch.testing.assert_close(attn(x, mask=mask), want, atol=1e-6, rtol=1e-5)


def test_causal_self_attention_matches_reference(attn):
    x = torch.randn(2, 6, 32)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    q, k, v = (split_heads(t, 4) for t in attn.qkv(x).split(32, -1))
    want = attn.out(reference_attention(q, k, v, causal).transpose(1, 2).reshape(2, 6, 32))
    torch.testing.assert_close(attn(x, is_causal=True), want, atol=1e-6, rtol=1e-5)


def test_kv_cache_prefill_then_steps_equals_full_causal_pass(attn):
    x = torch.randn(3, 9, 32)
    full = attn(x, is_causal=True)
    attn.cache = KVCache(3, 4, 9, 8, torch.float32)
    k_ptr = attn.cache.k.data_ptr()
    pos = torch.arange(9)
    # prefill 4 positions in one pass with an explicit bottom-right causal mask
    mask = torch.arange(4) <= pos[:4, None]
    outs = [attn(x[:, :4], mask=mask, input_pos=pos[:4], kv_len=4)]
    for t in range(4, 9):  # then one query at a time over the filled prefix
        outs.append(attn(x[:, t : t + 1], input_pos=pos[t : t + 1], kv_len=t + 1))
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert attn.cache.k.data_ptr() == k_ptr  # written in place, never reallocated


def test_static_cache_with_full_length_mask_equals_sliced(attn):
    """The compile-friendly path (whole cache + position mask) matches the eager sliced path."""
    x = torch.randn(2, 5, 32)
    full = attn(x, is_causal=True)
    attn.cache = KVCache(2, 4, 12, 8, torch.float32)
    for t in range(5):
        pos = torch.tensor([t])
        y = attn(x[:, t : t + 1], mask=torch.arange(12) <= pos[:, None], input_pos=pos)
        torch.testing.assert_close(y, full[:, t : t + 1], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_one_query_cache_steps_match_the_full_causal_pass():
    """Single-query steps over the cache prefix on CPU (the sampler's case) take the matmul path."""
    torch.manual_seed(2)
    self_attn = SelfAttention(32, 4).eval()
    x = torch.randn(3, 6, 32)
    full = self_attn(x, is_causal=True)  # several queries: SDPA
    self_attn.cache = KVCache(3, 4, 6, 8, torch.float32)
    self_attn(x[:, :1], input_pos=torch.tensor([0]), kv_len=1)
    steps = [self_attn(x[:, t : t + 1], input_pos=torch.tensor([t]), kv_len=t + 1) for t in range(1, 6)]
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 1:], atol=1e-6, rtol=1e-5)


def test_input_pos_without_cache_is_an_error(attn):
    with pytest.raises(ValueError, match="no KV cache"):
        attn(torch.randn(1, 1, 32), input_pos=torch.tensor([0]))


def test_cross_attention_cache_equals_recomputing_and_reuses_buffers():
    torch.manual_seed(1)
    cross = CrossAttention(32, 4).eval()
    x, memory = torch.randn(2, 3, 32), torch.randn(2, 7, 32)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :]
    want = cross(x, memory, mask)
    q = split_heads(cross.q(x), 4)
    k, v = cross.project_kv(memory)
    torch.testing.assert_close(
        want, cross.out(reference_attention(q, k, v, mask).transpose(1, 2).reshape(2, 3, 32)), atol=1e-6, rtol=1e-5)
    cross.fill_cross_cache(memory)
    ptr = cross.cache.k.data_ptr()
    torch.testing.assert_close(cross(x, None, mask), want)
    cross.fill_cross_cache(memory * 2)  # same shapes: same buffers, new contents
    assert cross.cache.k.data_ptr() == ptr
    assert not torch.allclose(cross(x, None, mask), want)


def test_cross_attention_without_memory_is_an_error():
    with pytest.raises(ValueError, match="context"):
        CrossAttention(16, 2)(torch.randn(1, 1, 16))


def test_heads_must_divide_width():
    for kind in (SelfAttention, CrossAttention):
        with pytest.raises(ValueError, match="divisible"):
            kind(30, 4)


def test_arguments_that_do_not_apply_raise(attn):
    """One class per kind of attention: what a kind cannot use is an error, never silently ignored."""
    x = torch.randn(1, 1, 32)
    with pytest.raises(ValueError, match="kv_len applies to cached decoding"):
        attn(x, kv_len=1)
    attn.cache = KVCache(1, 4, 4, 8, torch.float32)
    with pytest.raises(ValueError, match="is_causal is for uncached"):
        attn(x, input_pos=torch.tensor([0]), kv_len=1, is_causal=True)
    cross = CrossAttention(32, 4)
    for bad in ({"input_pos": torch.tensor([0])}, {"kv_len": 1}, {"is_causal": True}):
        with pytest.raises(TypeError):
            cross(x, torch.randn(1, 3, 32), **bad)


@torch.no_grad()
def test_the_one_kernel_gives_the_same_result_on_both_paths():
    """attend(cache_read=True) on CPU float32 is the matrix-vector path; it equals SDPA's result."""
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 4, 1, 8), torch.randn(2, 4, 50, 8), torch.randn(2, 4, 50, 8)
    torch.testing.assert_close(attend(q, k, v, cache_read=True), attend(q, k, v), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(attend(q, k, v), reference_attention(q, k, v), atol=1e-6, rtol=1e-5)


def test_norms_are_native_on_cpu_and_logged(caplog):
    from argen import nn as argen_nn

    argen_nn._log_norm_choice.cache_clear()
    with caplog.at_level(logging.INFO, logger="argen.nn"):
        ln, rms, _ = make_norm("layernorm", 8), make_norm("rmsnorm", 8), make_norm("rmsnorm", 8)
    if not torch.cuda.is_available():
        assert type(ln) is nn.LayerNorm and type(rms) is nn.RMSNorm
    messages = [r.getMessage() for r in caplog.records if "argen norms" in r.getMessage()]
    assert len(messages) == 2  # once per kind, not once per layer
    x = torch.randn(4, 8) * 5 + 3
    torch.testing.assert_close(rms(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt())


def test_unknown_norm_is_an_error():
    with pytest.raises(ValueError, match="norm must be one of"):
        make_norm("batchnorm", 8)


def test_mlp_and_positions():
    mlp = MLP(16, 64)
    assert mlp(torch.randn(2, 3, 16)).shape == (2, 3, 16)
    pos = PositionalEmbedding(10, 16)
    assert pos(torch.arange(4)).shape == (4, 16) and pos.max_len == 10


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_packed_linear_matches_and_never_goes_stale():
    torch.manual_seed(2)
    lin = Linear(256, 320)
    x = torch.randn(5, 1, 256)
    lin.pack(5)
    assert lin.packed is not None
    with torch.no_grad():
        assert lin.packed.linear(x, lin.bias) is not None  # the packed copy really serves
        torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias), atol=1e-4, rtol=1e-5)
        lin.weight.mul_(2)  # an optimizer step / load_state_dict changes the weight in place
        assert lin.packed.linear(x, lin.bias) is None
        torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias))
    lin.pack(5)
    lin(x).sum().backward()  # with autograd the plain weight is used, so gradients reach it
    assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    assert set(lin.state_dict()) == {"weight", "bias"}
    small = Linear(16, 24)
    small.pack(5)
    assert small.packed is None  # too small to gain from packing


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_gelu_linear_fused_when_packed_matches_unfused():
    torch.manual_seed(3)
    lin = Linear(256, 1024, gelu=True)
    x = torch.randn(6, 1, 256)
    with torch.no_grad():
        want = torch.nn.functional.gelu(torch.nn.functional.linear(x, lin.weight, lin.bias))
        torch.testing.assert_close(lin(x), want)
        lin.pack(6)
        assert lin.packed.linear(x, lin.bias, gelu=True) is not None  # the fused kernel serves
        torch.testing.assert_close(lin(x), want, atol=1e-5, rtol=1e-5)
    assert MLP(16, 64).fc.gelu  # the MLP's activation lives in its first linear
