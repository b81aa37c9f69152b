"""argen.transformer.sampling: exactness of the KV cache, seeds, CFG, filters, grammar, EOS, scoring."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from toys import GridTarget, ParityTarget, V, make_model, prompts

from argen.transformer import EncoderDecoder, TransformerConfig, generate, log_likelihood
from argen.transformer import sampling as S
from argen.transformer.sampling import rerank_scores, sample_logits

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py



UNCOND = torch.tensor([[1, 2]])


@pytest.fixture(scope="module")
def grid_model():
    return make_model(GridTarget().feature_sizes)


def test_cached_equals_uncached_over_a_full_sequence(grid_model):
    ids, mask = prompts()
    target = GridTarget()
    kw = dict(uncond_ids=UNCOND, cfg_scale=2.5, seeds=[3, 4, 5], top_k=10, return_logits=True)
    fast, fast_logits = generate(grid_model, ids, mask, target, **kw)
    slow, slow_logits = generate(grid_model, ids, mask, target, use_cache=False, **kw)
    assert fast.shape == (3, 36) and fast_logits.shape == (3, 36, V)
    assert torch.equal(fast, slow)
    assert (fast_logits - slow_logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("guided", [False, True])
def test_named_steps_compose_to_generate_and_check_k_tokens_at_once(grid_model, guided):
    """The seam a speculative decoder uses: one ``decode_window`` pass gives the logits of k positions,
    equal to k single steps; a rejected draft's cache slots need no clearing (kv_len bounds what is read)."""
    ids, mask = prompts()
    target = GridTarget()
    kw = dict(seeds=[0, 1, 2], max_len=12, return_logits=True, **(dict(uncond_ids=UNCOND, cfg_scale=2.0)
                                                                    if guided else {}))
    ref, ref_logits = generate(grid_model, ids, mask, target, **kw)
    state = S.start(grid_model, ids, mask, target, **kw)

    def window(x, start):  # one pass over positions start .. start + T - 1 of every row
        pos = (start + torch.arange(x.shape[1]))[None].expand(x.shape[0], -1)
        return grid_model.decode_window(x, state.features(x, pos), pos, kv_len=start + x.shape[1],
                                        cfg_scale=state.cfg_scale)

    with S.inference(grid_model):
        S.setup_cache(grid_model, state)
        S.prefill(grid_model, state)  # token 0
        draft = torch.randint(0, V, (3, 4), generator=torch.Generator().manual_seed(0))
        junk = window(torch.cat([state.inputs[:, 1:2], draft], 1), 1)
        assert junk.shape == (3, 5, V)  # slots 1..5 now hold a wrong draft's keys and values
        at_once = window(torch.cat([state.inputs[:, 1:2], ref[:, 1:5]], 1), 1)
        torch.testing.assert_close(at_once.float(), ref_logits[:, 1:6], atol=1e-4, rtol=1e-4)
        window(torch.cat([state.inputs[:, 1:2], draft], 1), 1)  # junk again
        S.decode_n_tokens(grid_model, state, 100)  # from token 1, single steps over the junk slots
    tokens, logits = state.result()
    assert state.done and torch.equal(tokens, ref)
    assert (logits - ref_logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize("guided", [False, True])
def test_one_row_window_takes_the_slice_path_and_matches_single_steps(grid_model, guided):
    """Batch 1: decode_window writes the cache by slice (one shared mask) and gives the logits that
    single steps give, also over slots a rejected draft wrote."""
    ids, mask = (t[:1] for t in prompts())
    target = GridTarget()
    kw = dict(seeds=[4], max_len=12, return_logits=True, **(dict(uncond_ids=UNCOND, cfg_scale=2.0) if guided else {}))
    ref, ref_logits = generate(grid_model, ids, mask, target, **kw)
    state = S.start(grid_model, ids, mask, target, **kw)
    writes = []
    with S.inference(grid_model):
        S.setup_cache(grid_model, state)
        S.prefill(grid_model, state)
        cache = grid_model.decoder[0].self_attn.cache
        original = cache.update
        cache.update = lambda pos, k, v, start=None: writes.append(start) or original(pos, k, v, start)
        for x in (torch.tensor([[7, 7, 7]]), ref[:, 1:4]):  # a wrong draft, then the right one
            x = torch.cat([state.inputs[:, 1:2], x], 1)
            pos = (1 + torch.arange(4))[None]
            got = grid_model.decode_window(x, state.features(x, pos), pos, kv_len=5, cfg_scale=state.cfg_scale)
        cache.update = original
    torch.testing.assert_close(got.float(), ref_logits[:, 1:5], atol=1e-4, rtol=1e-4)
    assert writes == [1, 1]  # slice writes at position 1, not per-row scatters


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_cpu_packed_weights_decode_exactly():
    """Wide enough layers take the prepacked-weight path; it must agree with uncached decoding."""
    torch.manual_seed(0)
    config = TransformerConfig(text_vocab_size=40, target_vocab_size=V, max_text_len=12, max_target_len=24,
                               d_model=128, n_heads=4, enc_layers=1, dec_layers=2, d_ff=512)
    model = EncoderDecoder(config).eval()
    ids, mask = prompts()
    engaged = []
    kw = dict(uncond_ids=UNCOND, cfg_scale=2.0, seeds=[1, 2, 3], max_len=24, return_logits=True)
    fast, fast_logits = generate(model, ids, mask, ParityTarget(24), **kw,
                                 callback=lambda n, total: engaged.append(model.decoder[1].mlp.fc.packed is not None))
    slow, slow_logits = generate(model, ids, mask, ParityTarget(24), use_cache=False, **kw)
    assert engaged and all(engaged)
    assert torch.equal(fast, slow)
    assert (fast_logits - slow_logits).abs().max().item() <= 1e-4
    # the packs are parked (kept, but not used by other passes) for the next generation of the same
    # batch, which reuses them...
    fc = model.decoder[1].mlp.fc
    kept = fc.parked
    assert fc.packed is None and kept is not None
    engaged.clear()
    again = generate(model, ids, mask, ParityTarget(24), **kw,
                     callback=lambda n, total: engaged.append(model.decoder[1].mlp.fc.packed is kept))
    assert engaged and all(engaged) and torch.equal(again[0], fast)
    # ...but never once the weights change: the next generation packs them again and follows them
    with torch.no_grad():
        model.decoder[1].mlp.fc.weight.mul_(0.5)
    changed, changed_logits = generate(model, ids, mask, ParityTarget(24), **kw)
    assert fc.parked is not kept
    reference, reference_logits = generate(model, ids, mask, ParityTarget(24), use_cache=False, **kw)
    assert torch.equal(changed, reference) and (changed_logits - reference_logits).abs().max().item() <= 1e-4
    generate(model, ids[:2], mask[:2], ParityTarget(24), **{**kw, "seeds": [1, 2]})  # another batch: repacked
    assert fc.parked.rows == 2 * 2  # 2 rows, each with its unconditional twin
    model.clear_cache()
    assert fc.packed is None and fc.parked is None


def test_seed_fixes_a_row_whatever_the_batch(grid_model):
    ids, mask = prompts()
    target = GridTarget()
    kw = dict(uncond_ids=UNCOND, cfg_scale=2.0, top_p=0.9)
    batched = generate(grid_model, ids, mask, target, seeds=[10, 11, 12], **kw)
    for i, seed in enumerate([10, 11, 12]):
        alone = generate(grid_model, ids[i : i + 1], mask[i : i + 1], target, seeds=[seed], **kw)
        assert torch.equal(alone[0], batched[i])
    reordered = generate(grid_model, ids.flip(0), mask.flip(0), target, seeds=[12, 11, 10], **kw)
    assert torch.equal(reordered.flip(0), batched)
    other = generate(grid_model, ids, mask, target, seeds=[13, 14, 15], **kw)
    assert not torch.equal(other, batched)


def test_global_rng_when_no_seeds(grid_model):
    ids, mask = prompts()
    torch.manual_seed(7)
    a = generate(grid_model, ids, mask, GridTarget())
    torch.manual_seed(7)
    assert torch.equal(a, generate(grid_model, ids, mask, GridTarget()))


def test_guidance_combines_cond_and_uncond_logits(grid_model):
    ids, mask = prompts()
    target = GridTarget()
    tokens, guided = generate(grid_model, ids, mask, target, uncond_ids=UNCOND, cfg_scale=3.0, seeds=[0, 1, 2],
                              return_logits=True)
    inputs = grid_model.shift_right(tokens)
    feats = target.token_features(inputs, torch.arange(36))
    with torch.no_grad():
        c = grid_model(ids, mask, inputs, feats)
        u = grid_model(UNCOND.expand(3, -1), torch.ones(3, 2, dtype=torch.bool), inputs, feats)
    torch.testing.assert_close(guided, u + 3.0 * (c - u), atol=1e-4, rtol=1e-4)


def test_greedy_and_filters_pick_from_their_sets(grid_model):
    ids, mask = prompts()
    target = GridTarget()
    greedy, logits = generate(grid_model, ids, mask, target, temperature=0.0, return_logits=True)
    assert torch.equal(greedy, logits.argmax(-1))
    assert torch.equal(generate(grid_model, ids, mask, target, top_k=1, seeds=[1, 2, 3]), greedy)
    assert torch.equal(generate(grid_model, ids, mask, target, top_p=1e-6, seeds=[1, 2, 3]), greedy)
    tokens, logits = generate(grid_model, ids, mask, target, top_k=3, seeds=[1, 2, 3], return_logits=True)
    assert (logits.topk(3, -1).indices == tokens[..., None]).any(-1).all()
    tokens, logits = generate(grid_model, ids, mask, target, top_p=0.5, seeds=[1, 2, 3], return_logits=True)
    probs = logits.softmax(-1)
    mass_before = (probs * (probs > probs.gather(-1, tokens[..., None]))).sum(-1)
    assert (mass_before < 0.5).all()  # the token lies inside the nucleus
    full = generate(grid_model, ids, mask, target, seeds=[1, 2, 3])
    assert not torch.equal(full, greedy)


def test_inverse_cdf_sampler_matches_softmax_frequencies():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]]).expand(20000, -1)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(sample_logits(logits, u), minlength=5).float() / 20000
    torch.testing.assert_close(counts, logits[0].softmax(-1), atol=0.015, rtol=0)
    assert counts[4] == 0
    hot = sample_logits(logits, u, temperature=0.1)
    assert (hot == 0).float().mean() > 0.99
    edge = sample_logits(logits[:2], torch.tensor([0.0, 1.0 - 2**-24]))
    assert edge.tolist() == [0, 3]  # the extremes never land on a masked token


def test_prefix_continues_the_same_sample(grid_model):
    ids, mask = prompts()
    target = GridTarget()
    kw = dict(uncond_ids=UNCOND, cfg_scale=2.0, seeds=[5, 6, 7])
    full = generate(grid_model, ids, mask, target, **kw)
    for use_cache in (True, False):
        completed = generate(grid_model, ids, mask, target, prefix=full[:, :10], use_cache=use_cache, **kw)
        assert torch.equal(completed, full)
    edited = full[:, :10].clone()
    edited[:, 9] = (edited[:, 9] + 1) % V
    changed = generate(grid_model, ids, mask, target, prefix=edited, **kw)
    assert torch.equal(changed[:, :10], edited) and not torch.equal(changed, full)


def test_grammar_eos_and_pad():
    model = make_model()
    ids, mask = prompts(B=6)
    target = ParityTarget()
    tokens = generate(model, ids, mask, target, seeds=range(6))
    grammar = target.grammar()
    assert grammar.accepts(tokens).all()
    is_eos = tokens == 22
    after = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    assert (tokens[after] == 23).all() and (tokens[~after] != 23).all()
    assert torch.equal(generate(model, ids, mask, target, seeds=range(6), use_cache=False), tokens)


def test_stops_once_every_row_has_finished():
    model = make_model()
    ids, mask = prompts()
    calls = []
    tokens = generate(model, ids, mask, ParityTarget(force_eos_at=4), seeds=[0, 1, 2],
                      callback=lambda n, total: calls.append((n, total)))
    assert tokens.shape == (3, 5) and (tokens[:, 4] == 22).all()
    assert calls == [(n, 20) for n in range(1, 6)]


def test_log_likelihood_matches_sampling_logits():
    model = make_model()
    ids, mask = prompts()
    target = ParityTarget()
    tokens, logits = generate(model, ids, mask, target, seeds=[0, 1, 2], return_logits=True)
    # the sampler's logits are before the grammar mask; the model's likelihood is unconstrained
    per_token = logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    is_eos = (tokens == 22).long()
    valid = (is_eos.cumsum(1) - is_eos) == 0
    want = (per_token * valid).sum(1)
    torch.testing.assert_close(log_likelihood(model, ids, mask, tokens, target), want, atol=1e-4, rtol=1e-5)
    padded = torch.cat([tokens, torch.full((3, 4), 23)], 1)  # trailing pad is ignored
    torch.testing.assert_close(log_likelihood(model, ids, mask, padded, target), want, atol=1e-4, rtol=1e-5)


def test_rerank_scores_are_cond_minus_uncond():
    model = make_model()
    ids, mask = prompts()
    target = ParityTarget()
    tokens = generate(model, ids, mask, target, seeds=[0, 1, 2])
    uncond_mask = torch.ones_like(UNCOND, dtype=torch.bool)
    cond = log_likelihood(model, ids, mask, tokens, target)
    uncond = log_likelihood(model, UNCOND.expand(3, -1), uncond_mask.expand(3, -1), tokens, target)
    torch.testing.assert_close(rerank_scores(model, ids, mask, UNCOND, uncond_mask, tokens, target),
                               cond - uncond, atol=1e-4, rtol=1e-5)


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_decode_step_is_static_no_cat_and_cache_reused(grid_model):
    ids, mask = prompts()
    target = GridTarget()
    generate(grid_model, ids, mask, target, seeds=[0, 1, 2], uncond_ids=UNCOND, cfg_scale=2.0)
    ptr = grid_model.decoder[0].self_attn.cache.k.data_ptr()
    generate(grid_model, ids, mask, target, seeds=[0, 1, 2], uncond_ids=UNCOND, cfg_scale=2.0)
    assert grid_model.decoder[0].self_attn.cache.k.data_ptr() == ptr  # reused across calls
    counts = []
    with torch.no_grad():
        for t in (5, 30):
            x = torch.zeros(3, 1, dtype=torch.long)  # guided: token rows shared by cond and uncond
            pos = torch.tensor([t])
            feats = target.token_features(x, pos)
            with OpCounter() as counter:
                grid_model.decode_step(x, feats, pos, kv_len=t + 1, cfg_scale=2.0)
            assert not any(op in ("aten.cat", "aten.stack") for op in counter.ops)
            counts.append(len(counter.ops))
    assert counts[0] == counts[1]  # the same work at every position: no growing buffers


def test_inference_mode_then_no_grad_reuses_safely(grid_model):
    """Sampling inside torch.inference_mode (a Lightning validation step) and then outside it."""
    ids, mask = prompts()
    kw = dict(seeds=[0, 1, 2], uncond_ids=UNCOND, cfg_scale=2.0, max_len=8)
    with torch.inference_mode():
        a = generate(grid_model, ids, mask, GridTarget(), **kw)
    assert torch.equal(generate(grid_model, ids, mask, GridTarget(), **kw), a)
    with torch.inference_mode():
        assert torch.equal(generate(grid_model, ids, mask, GridTarget(), **kw), a)


def test_restores_training_mode(grid_model):
    ids, mask = prompts()
    grid_model.train()
    generate(grid_model, ids, mask, GridTarget(), max_len=3)
    assert grid_model.training
    grid_model.eval()


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(cfg_scale=-1.0, uncond_ids=UNCOND), "cfg_scale"),
    (dict(cfg_scale=2.0), "uncond_ids"),
    (dict(seeds=[1]), "one seed per row"),
    (dict(max_len=41), "max_len"),
    (dict(prefix=torch.zeros(2, 3, dtype=torch.long)), "prefix"),
    (dict(uncond_ids=torch.zeros(2, 3, dtype=torch.long), cfg_scale=2.0), "uncond_ids"),
])
def test_bad_arguments_are_clear_errors(grid_model, kwargs, message):
    ids, mask = prompts()
    with pytest.raises(ValueError, match=message):
        generate(grid_model, ids, mask, GridTarget(), **kwargs)


def test_target_must_match_the_model(grid_model):
    ids, mask = prompts()
    with pytest.raises(ValueError, match="feature tables"):
        generate(grid_model, ids, mask, ParityTarget())


@pytest.mark.slow
def test_compiled_step_matches_eager(grid_model):
    ids, mask = prompts()
    kw = dict(uncond_ids=UNCOND, cfg_scale=2.0, seeds=[0, 1, 2], return_logits=True)
    eager, eager_logits = generate(grid_model, ids, mask, GridTarget(), **kw)
    from torch._dynamo.utils import counters

    counters.clear()
    compiled, compiled_logits = generate(grid_model, ids, mask, GridTarget(), compile=True, **kw)
    assert counters["stats"]["unique_graphs"] >= 1  # the step really went through torch.compile
    assert torch.equal(eager, compiled)
    assert (eager_logits - compiled_logits).abs().max().item() <= 1e-4
    other_ids, other_mask = prompts(seed=1)  # same shapes, new text: buffers refilled in place, not baked in
    eager = generate(grid_model, other_ids, other_mask, GridTarget(), **kw)[0]
    assert torch.equal(generate(grid_model, other_ids, other_mask, GridTarget(), compile=True, **kw)[0], eager)
