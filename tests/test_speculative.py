"""argen.transformer.speculative: greedy gives the sequential tokens; sampling gives the sequential distribution."""

import random

import pytest
import torch
import torch.nn.functional as F
from toys import GridTarget, ParityTarget, V, make_model, prompts

from argen.targets import Grammar, TargetTokenizer
from argen.transformer import EncoderDecoder, TransformerConfig, generate
from argen.transformer import speculative as spec
from argen.transformer.drafts import CorpusDrafts
from argen.transformer.sampling import sample_logits
from argen.transformer.speculative import SpeculativeStats, generate_speculative, speculative_window, token_probs

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


UNCOND = torch.tensor([[1, 2]])


@pytest.mark.parametrize("kind", ["image", "grammar"])
@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("greedy", [dict(temperature=0.0), dict(top_k=1)])
def test_greedy_is_bit_identical_to_sequential(kind, guided, greedy):
    target = GridTarget() if kind == "image" else ParityTarget(30)
    model = make_model(target.feature_sizes)
    ids, mask = prompts()
    kw = dict(greedy, **(dict(uncond_ids=UNCOND, cfg_scale=2.5) if guided else {}))
    sequential = generate(model, ids, mask, target, **kw)
    for window in (1, 4, 9):
        stats = SpeculativeStats()
        fast = generate_speculative(model, ids, mask, target, window=window, stats=stats, **kw)
        assert torch.equal(fast, sequential), window
        assert stats.passes <= sequential.shape[1] and stats.mean_accepted >= 1.0
    # Corpus drafts: a corpus of noise (wrong, and illegal under the grammar), then one that also holds
    # the answers. Neither changes a token; the second drafts nearly all of them.
    noise = torch.randint(0, V, (20, 12), generator=torch.Generator().manual_seed(0)).tolist()
    passes = []
    for corpus in (noise, noise + sequential.tolist()):
        stats = SpeculativeStats()
        fast = generate_speculative(model, ids, mask, target, window=4, stats=stats, corpus=CorpusDrafts(corpus), **kw)
        assert torch.equal(fast, sequential)
        passes.append(stats.passes)
    assert passes[1] <= sequential.shape[1] // 3 + 1 < passes[0], passes  # a window of 4: ~4 tokens a pass


def test_greedy_with_a_prefix_and_the_static_path():
    target = GridTarget()
    model = make_model(target.feature_sizes)
    ids, mask = prompts()
    prefix = torch.tensor([[3, 4, 5]]).expand(3, -1)
    kw = dict(temperature=0.0, uncond_ids=UNCOND, cfg_scale=2.0, prefix=prefix)
    sequential = generate(model, ids, mask, target, **kw)
    assert torch.equal(generate_speculative(model, ids, mask, target, window=5, **kw), sequential)
    # decode_window without kv_len reads the whole cache under its position mask (the compilable path)
    model.setup_cache(model.encode(ids, mask), mask, 36, slack=4)
    x = torch.randint(0, V, (3, 4))
    pos = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]])
    eager = model.decode_window(x, target.token_features(x, pos), pos, kv_len=4)
    static = model.decode_window(x, target.token_features(x, pos), pos)
    full = model(ids, mask, x, target.token_features(x, pos[0]))
    assert (eager - full).abs().max() < 1e-4 and (static - full).abs().max() < 1e-4


def test_rows_at_different_positions_match_their_own_decoding():
    """Per-row write positions: a row's logits do not depend on where the other rows stand."""
    target = GridTarget()
    model = make_model(target.feature_sizes)
    ids, mask = prompts(2)
    seqs = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(1))
    x = model.shift_right(seqs)
    full = model(ids, mask, x, target.token_features(x, torch.arange(10)))
    model.setup_cache(model.encode(ids, mask), mask, 36, slack=6)
    ar = torch.arange(10)
    model.decode_window(x[:, :3], target.token_features(x[:, :3], ar[:3]), ar[:3].expand(2, -1), kv_len=3)
    model.decode_window(x[:1, 3:6].repeat(2, 1), None if False else target.token_features(x[:, 3:6], ar[3:6]),
                        ar[3:6].expand(2, -1), kv_len=6)  # row 1 gets row 0's tokens: stale slots
    pos = torch.tensor([[6, 7, 8, 9], [3, 4, 5, 6]])
    xin = torch.stack([x[0, 6:10], x[1, 3:7]])
    out = model.decode_window(xin, target.token_features(xin, pos), pos, kv_len=10)
    assert (out[0] - full[0, 6:10]).abs().max() < 1e-4
    assert (out[1] - full[1, 3:7]).abs().max() < 1e-4


def test_token_probs_is_what_sample_logits_draws_from():
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(0)) * 2
    u = (torch.arange(20000) + 0.5) / 20000
    for kw in (dict(), dict(temperature=0.7, top_k=5), dict(top_p=0.6), dict(temperature=1.3, top_k=12, top_p=0.8)):
        probs = token_probs(logits, **kw)
        for row in range(4):
            draws = sample_logits(logits[row].expand(len(u), -1), u, **kw)
            freq = torch.bincount(draws, minlength=30).float() / len(u)
            assert (freq - probs[row]).abs().max() < 2e-4, kw


def test_top_p_over_the_likeliest_candidates_is_still_what_sample_logits_draws_from(monkeypatch):
    """token_probs sorts only the top candidates for a nucleus, then more; rows whose nucleus is wider
    still, or whose nucleus edge falls inside a tie, take the full sort. All must match the
    sequential sampler."""
    monkeypatch.setattr(spec, "TOP_P_CANDIDATES", (3, 6))
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(12, 40, generator=g) * torch.linspace(0.3, 6, 12)[:, None]  # flat rows: wide nuclei
    logits[::3, :4] = logits[::3, :1] + 5  # four tied favourites: a nucleus edge inside a tie
    u = (torch.arange(20000) + 0.5) / 20000
    for top_p in (0.3, 0.7, 0.95):
        for row in range(12):
            probs = token_probs(logits[row:row + 1], top_p=top_p)[0]
            draws = sample_logits(logits[row].expand(len(u), -1), u, top_p=top_p)
            freq = torch.bincount(draws, minlength=40).float() / len(u)
            assert (freq - probs).abs().max() < 2e-4, (top_p, row)


def test_coupled_drafts_repeat_when_their_distribution_repeats():
    probs = torch.softmax(torch.randn(2, 3, 50, generator=torch.Generator().manual_seed(0)), -1)
    keys, pos = torch.tensor([5, 6]), torch.tensor([[0, 1, 2], [7, 8, 9]])
    sites = spec.site_keys(keys, pos)
    a = spec.draw_drafts(probs, sites)[0]
    b = spec.draw_drafts(probs * 0.98 + 0.02 / 50, sites)[0]  # a small change keeps most drafts
    c = spec.draw_drafts(probs, spec.site_keys(keys + 1, pos))[0]
    assert torch.equal(a, spec.draw_drafts(probs, sites)[0])
    assert (a == b).float().mean() >= 0.8 and not torch.equal(a, c)
    g = spec.gumbel_noise(spec.site_keys(torch.tensor([1, 2]), torch.arange(64).view(2, 32)),
                          torch.arange(2000).expand(2, 32, -1))
    assert abs(g.mean().item() - 0.5772) < 0.01 and abs(g.std().item() - 1.2825) < 0.01  # standard Gumbel


# -- exactness in distribution, on a model trained here --------------------------------------------
EOS, PAD, TV = 6, 7, 8  # six "colours", EOS, PAD


class ChainTarget(TargetTokenizer):
    """Sequences of colours with no immediate repeat (the grammar), then EOS and PAD."""

    eos_id, pad_id, vocab_size, max_len = EOS, PAD, TV, 7

    def grammar(self):
        # states: 0..5 the last colour, 6 start, 7 done
        allowed = torch.zeros(8, TV, dtype=torch.bool)
        transition = torch.full((8, TV), 7)
        allowed[6, :6] = True
        transition[6, :6] = torch.arange(6)
        for s in range(6):
            allowed[s, :6] = True
            allowed[s, s] = False
            transition[s, :6] = torch.arange(6)
            allowed[s, EOS] = True
        allowed[7, PAD] = True
        return Grammar(allowed, transition, start=6)


def chain_data(n, rng):
    """Class c in {1, 2}: start at 0 or 3, step +c (mod 6) with p=0.7 else +1..5, stop with p=0.35 after 3."""
    cls, rows = [], []
    for _ in range(n):
        c = rng.randint(1, 2)
        x, seq = (0 if c == 1 else 3), []
        while True:
            seq.append(x)
            if len(seq) >= 3 and (len(seq) == 6 or rng.random() < 0.35):
                break
            x = (x + (c if rng.random() < 0.7 else rng.randint(1, 5))) % 6
        cls.append(0 if rng.random() < 0.15 else c)  # 0: the empty caption, for guidance
        rows.append(seq + [EOS] + [PAD] * (6 - len(seq)))
    return torch.tensor(cls), torch.tensor(rows)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    config = TransformerConfig(text_vocab_size=4, target_vocab_size=TV, max_text_len=2, max_target_len=7,
                               d_model=32, n_heads=2, enc_layers=1, dec_layers=2, d_ff=64)
    model = EncoderDecoder(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    for _ in range(300):
        cls, y = chain_data(64, rng)
        logits = model(cls[:, None], torch.ones(64, 1, dtype=torch.bool), model.shift_right(y))
        loss = F.cross_entropy(logits.reshape(-1, TV), y.reshape(-1), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _chi_square_p(a: list[tuple], b: list[tuple]) -> float:
    """Two-sample chi-square homogeneity test of two equal-size samples of whole sequences; p-value."""
    keys = sorted(set(a) | set(b))
    ca, cb = torch.tensor([a.count(k) for k in keys]), torch.tensor([b.count(k) for k in keys])
    big = (ca + cb) >= 10  # pool rare sequences into one cell
    ca = torch.cat([ca[big], ca[~big].sum()[None]]).double()
    cb = torch.cat([cb[big], cb[~big].sum()[None]]).double()
    keep = (ca + cb) > 0
    ca, cb = ca[keep], cb[keep]
    expected = (ca + cb) / 2
    stat = (((ca - expected) ** 2 + (cb - expected) ** 2) / expected).sum()
    dof = torch.tensor(len(ca) - 1.0, dtype=torch.float64)
    return float(torch.special.gammaincc(dof / 2, stat / 2))


def _samples(model, fn, n, seed, **kw):
    cls = torch.arange(n) % 2 + 1
    out = fn(model, cls[:, None], torch.ones(n, 1, dtype=torch.bool), ChainTarget(),
             uncond_ids=torch.tensor([[0]]), seeds=list(range(seed, seed + n)), **kw)
    return [tuple(r) for r in out.tolist()]


SETTINGS = [dict(), dict(cfg_scale=2.0, temperature=0.8, top_p=0.9)]


def training_corpus() -> CorpusDrafts:
    """Corpus drafts from sequences of the training distribution (PAD stripped)."""
    _, rows = chain_data(500, random.Random(1))
    return CorpusDrafts([[t for t in r if t != PAD] for r in rows.tolist()])


@pytest.mark.parametrize("kw", SETTINGS, ids=["plain", "guided-filtered"])
@pytest.mark.parametrize("corpus", [False, True], ids=["jacobi", "corpus"])
def test_sampled_distribution_matches_sequential(trained, kw, corpus):
    n = 3000
    sequential = _samples(trained, generate, n, 0, **kw)
    stats = SpeculativeStats()
    corpus = training_corpus() if corpus else None
    fast = _samples(trained, lambda *a, **k: generate_speculative(*a, window=4, stats=stats, corpus=corpus, **k),
                    n, 10**6, **kw)
    assert stats.mean_accepted > 1.1  # drafts do get accepted: the test is not sequential in disguise
    assert len(set(sequential)) > 20  # a real distribution, not a handful of sequences
    assert _chi_square_p(sequential, fast) > 1e-3
    assert all(ChainTarget().grammar().accepts(torch.tensor([r])) for r in set(fast))


@pytest.mark.parametrize("rule", ["always", "ignore-q", "corpus-always"])
def test_a_broken_acceptance_rule_is_caught(trained, monkeypatch, rule):
    broken = {"always": lambda p, q, r: torch.ones_like(p, dtype=torch.bool),
              "ignore-q": lambda p, q, r: r < p}[rule.removeprefix("corpus-")]
    monkeypatch.setattr(spec, "accept", broken)
    n = 3000
    corpus = training_corpus() if rule.startswith("corpus") else None
    sequential = _samples(trained, generate, n, 0)
    fast = _samples(trained, lambda *a, **k: generate_speculative(*a, window=4, corpus=corpus, **k), n, 10**6)
    assert _chi_square_p(sequential, fast) < 1e-6


@pytest.mark.slow
def test_compiled_window_matches_eager():
    """compile=True: the static-shape verify pass through torch.compile gives the eager tokens."""
    from torch._dynamo.utils import counters

    target = GridTarget()
    model = make_model(target.feature_sizes)
    ids, mask = prompts()
    kw = dict(uncond_ids=UNCOND, cfg_scale=2.0, seeds=[0, 1, 2], top_p=0.9, window=4)
    eager = generate_speculative(model, ids, mask, target, **kw)
    counters.clear()
    compiled = generate_speculative(model, ids, mask, target, compile=True, **kw)
    assert counters["stats"]["unique_graphs"] >= 1
    assert torch.equal(eager, compiled)
    corpus = CorpusDrafts(eager.tolist())  # corpus drafts: the same static shapes
    assert torch.equal(generate_speculative(model, ids, mask, target, corpus=corpus, **kw),
                       generate_speculative(model, ids, mask, target, compile=True, corpus=corpus, **kw))


def test_generator_and_cli_take_speculative():
    """Generator.generate(speculative=...) on a real SVG tokenizer: greedy icons are the sequential ones,
    sampled icons stay valid; the CLI flag parses to the same argument."""
    from argen.generator import Generator
    from argen.sample import parse_args
    from argen.svg import SVGTokenizer
    from argen.text import TextTokenizer

    target = SVGTokenizer(grid=8, max_len=30)
    torch.manual_seed(0)
    net = EncoderDecoder(TransformerConfig(text_vocab_size=64, target_vocab_size=target.vocab_size, max_text_len=8,
                                           max_target_len=30, target_feature_sizes=target.feature_sizes, d_model=32,
                                           n_heads=2, enc_layers=1, dec_layers=2, d_ff=64))
    text = TextTokenizer.train(["a red star", "a blue home", "a green heart"] * 10, 40)
    gen = Generator(net, text, target, sampling={"cfg_scale": 2.0, "temperature": 0.0})
    prompts = ["a red star", "a blue home"]
    assert gen.generate(prompts, 2, seed=1, speculative=3) == gen.generate(prompts, 2, seed=1)
    # True means the target's own window: the same passes as asking for that window by number
    ids, mask = text.encode(prompts, 8)
    runs = []
    for window in (None, target.speculative_window):
        stats = SpeculativeStats()
        generate_speculative(net, ids, mask, target, window=window, seeds=[3, 4], stats=stats)
        runs.append(stats.passes)
    assert runs[0] == runs[1] and speculative_window(True, target) == target.speculative_window
    stats = SpeculativeStats()  # gathered over batches: 6 rows in batches of 4 and 2
    icons = gen.generate(prompts, 3, seed=1, temperature=1.0, speculative=True, stats=stats, batch_size=4)
    assert all(svg.startswith("<svg") for per in icons for svg in per)
    assert len(stats.tokens) == len(stats.row_passes) == 6 and all(t >= 1 for t in stats.tokens)
    assert max(stats.row_passes[:4]) + max(stats.row_passes[4:]) <= stats.passes and stats.mean_accepted >= 1.0
    with pytest.raises(ValueError, match="speculative=True"):
        gen.generate(prompts, stats=SpeculativeStats())
    with pytest.raises(ValueError, match="KV cache"):
        gen.generate(prompts, speculative=True, use_cache=False)
    with pytest.raises(ValueError, match="window"):
        gen.generate(prompts, speculative=-2)
    assert parse_args(["x", "--speculative"]).speculative is True
    assert parse_args(["x", "--speculative", "5"]).speculative == 5
    assert parse_args(["x"]).speculative is False


def test_a_planned_svg_target_samples_valid_icons_both_ways():
    """With a plan the grammar makes the sampler write the plan first; decoding skips it, and greedy
    speculative decoding still equals sequential decoding."""
    from argen.generator import Generator
    from argen.svg import SVGTokenizer, normalize_paths
    from argen.text import TextTokenizer

    target = SVGTokenizer(grid=8, max_len=30, plan=[2, 4], canonical=True)
    torch.manual_seed(0)
    net = EncoderDecoder(TransformerConfig(text_vocab_size=64, target_vocab_size=target.vocab_size, max_text_len=8,
                                           max_target_len=30, target_feature_sizes=target.feature_sizes, d_model=32,
                                           n_heads=2, enc_layers=1, dec_layers=2, d_ff=64))
    text = TextTokenizer.train(["a red star", "a blue home"] * 10, 40)
    gen = Generator(net, text, target, sampling={"cfg_scale": 2.0, "temperature": 0.0})
    prompts = ["a red star", "a blue home"]
    assert gen.generate(prompts, 2, seed=1, speculative=2) == gen.generate(prompts, 2, seed=1)
    for per in gen.generate(prompts, 3, seed=2, temperature=1.0):
        for svg in per:
            normalize_paths(svg, 8)  # the strict parser accepts it: no plan id leaked into the paths
