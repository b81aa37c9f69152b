"""SVGTokenizer: token layout, round trips, grammar, FIM, batches, export and CLI construction."""

import json
import random

import pytest
import torch

import argen
from argen.svg import SVGError, SVGTokenizer, normalize_paths
from argen.svg import tokens as T
from argen.svg.metrics import raster_iou
from argen.svg.rasterize import rasterize
from argen.targets import TargetTokenizer, load_target

NS = 'xmlns="http://www.w3.org/2000/svg"'
ICON = (f'<svg {NS} viewBox="0 0 24 24"><path d="M12 2A10 10 0 1 0 12 22A10 10 0 1 0 12 2Z'
        'M12 6A6 6 0 1 1 12 18A6 6 0 1 1 12 6Z"/><rect x="10" y="10" width="4" height="4" rx="1"/>'
        '<polygon points="2,2 6,2 2,6"/></svg>')
SQUARE = f'<svg {NS} viewBox="0 0 10 10"><rect x="1" y="1" width="8" height="8"/></svg>'


@pytest.fixture(scope="module")
def tok():
    return SVGTokenizer(grid=64, max_len=256)


def test_is_a_target_tokenizer_with_the_iconshop_layout(tok):
    assert isinstance(tok, TargetTokenizer) and tok.kind == "svg_tokenizer"
    assert argen.SVGTokenizer is SVGTokenizer
    assert (tok.pad_id, tok.eos_id, T.PATH, T.CMD_M, T.CMD_L, T.CMD_C) == (0, 1, 2, 3, 4, 5)
    assert tok.vocab_size == T.OFFSET + 64 * 64 and tok.feature_sizes == (65, 65)
    ids = SVGTokenizer(grid=10).encode(SQUARE)
    # the square 1..9 of a 10-wide viewBox maps to 10..90 % of the grid: (1, 1) .. (9, 9)
    assert ids.tolist() == [T.PATH, T.CMD_M, T.OFFSET + 1 + 10, T.CMD_L, T.OFFSET + 9 + 10,
                            T.CMD_L, T.OFFSET + 9 + 90, T.CMD_L, T.OFFSET + 1 + 90, T.EOS]


def test_decode_is_a_minimal_black_svg_that_reencodes_identically(tok):
    ids = tok.encode(ICON)
    assert ids.dtype == torch.long and ids.dim() == 1 and ids[-1] == tok.eos_id
    out = tok.decode(ids)
    assert 'viewBox="0 0 64 64"' in out and 'fill="black"' in out and out.count("<path") == 3
    assert torch.equal(tok.encode(out), ids)
    assert tok.batch_decode(ids.unsqueeze(0)) == [out]
    assert tok.batch_decode(torch.stack([ids, ids])) == [out, out]
    with pytest.raises(ValueError, match="batch_decode"):
        tok.decode(ids.unsqueeze(0))  # one sequence in, one SVG out: a batch says so
    with pytest.raises(ValueError, match="use decode"):
        tok.batch_decode(ids)
    assert raster_iou(ICON, out, 64) > 0.95
    img = rasterize(out, 32)
    assert img.size == (32, 32) and img.mode == "RGB"


def test_normalize_is_the_unquantized_drawing_in_the_grid_frame(tok):
    out = tok.normalize(SQUARE)
    assert 'viewBox="0 0 64 64"' in out and "M6.4 6.4L57.6 6.4" in out


def test_cubics_with_controls_outside_the_grid_are_split_not_clamped():
    # the curve stays inside the viewBox but its controls reach y = 28 > 24: clamping them would
    # flatten the bowl (IoU ~0.75); splitting keeps it
    s = f'<svg {NS} viewBox="0 0 24 24"><path d="M1 10C1 28 23 28 23 10Z"/></svg>'
    tok = SVGTokenizer(grid=64)
    out = tok.decode(tok.encode(s))
    assert out.count("C") >= 2 and raster_iou(s, out) > 0.97


def test_degenerate_segments_are_dropped_and_empty_drawings_refused():
    tok = SVGTokenizer(grid=8)
    # a detail smaller than a grid step collapses: only the big square survives
    s = f'<svg {NS} viewBox="0 0 80 80"><rect width="80" height="80"/><rect x="30" y="30" width="1" height="1"/></svg>'
    assert tok.encode(s).tolist().count(T.PATH) == 1
    with pytest.raises(SVGError, match="nothing") as e:
        tok.encode(f'<svg {NS} viewBox="0 0 8 8"><rect width="8" height="8" fill="none"/></svg>')
    assert e.value.reason == "empty"


def test_grammar_accepts_encodings_and_is_small(tok):
    g = tok.grammar()
    assert g.allowed.shape == (T.NUM_STATES, tok.vocab_size) and T.NUM_STATES <= 32
    seqs = [tok.encode(ICON), tok.encode(SQUARE), tok.encode_fim(ICON, 0), tok.encode_fim(ICON, 1),
            tok.encode_fim(ICON, -1), tok.encode_fim(SQUARE, 0)]
    L = max(len(s) for s in seqs) + 3
    rows = torch.stack([torch.cat([s, torch.full((L - len(s),), tok.pad_id)]) for s in seqs])
    assert g.accepts(rows).all()
    bad = rows.clone()
    bad[:, 1] = T.CMD_L  # a path must begin with M
    assert not g.accepts(bad).any()
    early_eos = rows[:1].clone()
    early_eos[0, 4] = tok.eos_id  # inside the first segment
    assert not g.accepts(early_eos).any()


def test_grammar_has_no_dead_ends(tok):
    g = tok.grammar()
    allowed, trans = g.allowed, g.transition
    reachable, frontier = {g.start}, [g.start]
    while frontier:
        s = frontier.pop()
        for v in allowed[s].nonzero().flatten().unique().tolist()[:16] + [allowed.shape[1] - 1]:
            if allowed[s, v]:
                n = int(trans[s, v])
                if n not in reachable:
                    reachable.add(n)
                    frontier.append(n)
    assert all(allowed[s].any() for s in reachable)
    # from every reachable state EOS is reachable (the sampler can always finish)
    end = int(trans[[s for s in reachable if allowed[s, tok.eos_id]][0], tok.eos_id])
    can_end = {end}
    changed = True
    while changed:
        changed = False
        for s in reachable - can_end:
            if any(int(trans[s, v]) in can_end for v in allowed[s].nonzero().flatten().tolist()[:64]):
                can_end.add(s)
                changed = True
    assert can_end >= reachable


def sample_with_grammar(tok, rng, max_len):
    g = tok.grammar()
    state, out = g.start, []
    for _ in range(max_len):
        choices = g.allowed[state].nonzero().flatten()
        specials = choices[choices < T.OFFSET].tolist()
        # favour points so commands complete, sometimes stop
        v = rng.choice(specials) if specials and (rng.random() < 0.3 or len(choices) == len(specials)) \
            else rng.randrange(T.OFFSET, tok.vocab_size)
        if not g.allowed[state, v]:
            v = rng.choice(choices.tolist())
        out.append(v)
        state = int(g.transition[state, v])
        if v == tok.eos_id:
            break
    return out


def test_every_grammar_valid_sequence_and_every_truncation_decodes(tok):
    rng = random.Random(0)
    for _ in range(120):
        ids = sample_with_grammar(tok, rng, rng.randrange(4, 120))
        svg = tok.decode(torch.tensor(ids))
        normalize_paths(svg, 64)  # strict parser accepts it
        rasterize(svg, 16)
    ids = tok.encode_fim(ICON, 1).tolist()
    for n in range(len(ids) + 1):
        normalize_paths(tok.decode(torch.tensor(ids[:n], dtype=torch.long)), 64)


def test_decode_tolerates_garbage_and_bos(tok):
    rng = random.Random(1)
    for _ in range(50):
        ids = [rng.randrange(-3, tok.vocab_size + 3) for _ in range(rng.randrange(0, 60))]
        normalize_paths(tok.decode(torch.tensor(ids, dtype=torch.long)), 64)
    ids = tok.encode(SQUARE)
    with_bos = torch.cat([torch.tensor([tok.vocab_size]), ids])
    assert tok.decode(with_bos) == tok.decode(ids)


def test_fim_moves_one_path_behind_markers_and_decodes_back(tok):
    plain = tok.encode(ICON)
    fim = tok.encode_fim(ICON, 1)
    assert len(fim) == len(plain) + 2 and (fim == T.HOLE).sum() == 1 and (fim == T.MIDDLE).sum() == 1
    assert fim.tolist().index(T.HOLE) < fim.tolist().index(T.MIDDLE)
    assert tok.decode(fim) == tok.decode(plain)
    # a truncated FIM sequence (middle not written yet) still decodes: the hole stays empty
    cut = fim[: fim.tolist().index(T.MIDDLE) + 3]
    assert tok.decode(cut).count("<path") == 2


def test_encode_prefix_leaves_the_drawing_open(tok):
    prefix = tok.encode_prefix(ICON)
    assert torch.equal(prefix, tok.encode(ICON)[:-1])
    g = tok.grammar()
    state = torch.tensor([g.start])
    for t in prefix:
        assert g.mask(state)[0, t]
        state = g.step(state, t.view(1))
    assert g.mask(state)[0, tok.eos_id] and g.mask(state)[0, T.PATH]


def test_token_features_are_point_coordinates_plus_one(tok):
    ids = tok.encode(SQUARE)
    inputs = torch.cat([torch.tensor([tok.vocab_size]), ids[:-1]]).unsqueeze(0)  # BOS + shifted
    f = tok.token_features(inputs, torch.arange(inputs.shape[1]))
    assert f.shape == (1, inputs.shape[1], 2) and f.dtype == torch.long
    for t, (fx, fy) in zip(inputs[0].tolist(), f[0].tolist()):
        if T.OFFSET <= t < tok.vocab_size:
            assert (fx, fy) == ((t - T.OFFSET) % 64 + 1, (t - T.OFFSET) // 64 + 1)
        else:
            assert (fx, fy) == (0, 0)
    assert f.max() <= 64


def test_encode_batch_pads_and_counts_skips():
    tok = SVGTokenizer(grid=32, max_len=90)
    assert len(tok.encode(ICON)) <= 90
    big = f'<svg {NS} viewBox="0 0 32 32">' + "".join(
        f'<rect x="{i}" y="{i}" width="2" height="2"/>' for i in range(0, 30, 3)) + "</svg>"
    batch = {"svg": [SQUARE, "not xml", big, ICON.encode()]}
    ids = tok.encode_batch(batch)
    assert ids.shape[0] == 4 and ids.shape[1] == len(tok.encode(ICON))
    assert torch.equal(ids[3], tok.encode(ICON))
    assert (ids[1] == tok.pad_id).all() and (ids[2] == tok.pad_id).all()
    assert ids[0, : len(tok.encode(SQUARE))].tolist() == tok.encode(SQUARE).tolist()
    assert (ids[0, len(tok.encode(SQUARE)):] == tok.pad_id).all()
    assert tok.skipped["malformed"] == 1 and tok.skipped["too_long"] == 1
    assert tok.encode_batch({"svg": ["bad"]}).shape == (1, 1)


def test_encode_batch_with_fim_rate_one_is_all_fim_and_grammatical():
    tok = SVGTokenizer(grid=32, max_len=256, fim_rate=1.0)
    torch.manual_seed(0)
    ids = tok.encode_batch({"svg": [ICON, SQUARE, ICON]})
    assert ((ids == T.HOLE).sum(1) == 1).all() and ((ids == T.MIDDLE).sum(1) == 1).all()
    assert tok.grammar().accepts(ids).all()
    assert tok.batch_decode(ids)[0] == tok.decode(tok.encode(ICON))


def test_save_and_load_pretrained(tmp_path, tok):
    tok.save_pretrained(tmp_path / "t")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["argen_kind"] == "svg_tokenizer" and config["grid"] == 64 and config["max_len"] == 256
    back = SVGTokenizer.from_pretrained(tmp_path / "t")
    assert (back.grid, back.max_len, back.fim_rate) == (64, 256, 0.0)
    again = load_target(tmp_path / "t")
    assert isinstance(again, SVGTokenizer) and torch.equal(again.encode(ICON), tok.encode(ICON))
    assert tok.to("cpu") is tok
    on_meta = load_target(tmp_path / "t", device="meta")  # the device is honoured (it was ignored)
    assert on_meta.grammar().allowed.device.type == "meta"
    assert back.grammar().allowed.device.type == "cpu"


def test_decode_of_encode_is_an_svg_string(tok):
    """Regression: decode(encode(svg)) was a one-element list (the batch contract), not an SVG."""
    out = tok.decode(tok.encode(SQUARE))
    assert isinstance(out, str) and out.startswith("<svg") and torch.equal(tok.encode(out), tok.encode(SQUARE))


def test_constructible_from_lightning_cli_yaml():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--target", type=TargetTokenizer)
    cfg = parser.parse_string(
        "target:\n  class_path: argen.svg.SVGTokenizer\n  init_args: {grid: 64, max_len: 256}\n")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    target = instantiate(cfg).target
    assert isinstance(target, SVGTokenizer) and (target.grid, target.max_len) == (64, 256)


def test_plan_is_the_coarse_ink_masks_coarsest_first_and_decoding_skips_it(tmp_path):
    tok, plain = SVGTokenizer(grid=64, max_len=256, plan=[2, 4]), SVGTokenizer(grid=64, max_len=256)
    assert tok.vocab_size == plain.vocab_size + 256 and tok.plan_len == 3
    # ink on the top-left quarter and on about half of one 2 × 2-unit cell at the bottom right
    s = (f'<svg {NS} viewBox="0 0 8 8"><rect width="4" height="4"/>'
         '<rect x="6.5" y="6.5" width="1.5" height="1.5"/></svg>')
    ids = tok.encode(s)
    base = plain.vocab_size
    # 2 × 2: only the top-left cell; 4 × 4, row-major, 8 cells a token: rows 0-1, then rows 2-3
    assert ids[:3].tolist() == [base + 0b0001, base + 0b00110011, base + 0b10000000]
    assert torch.equal(ids[3:], plain.encode(s)) and tok.decode(ids) == plain.decode(ids[3:])
    assert torch.equal(tok.encode(tok.decode(ids)), ids)
    assert (tok.token_features(ids[None], torch.arange(len(ids)))[0, :3] == 0).all()
    g = tok.grammar()
    fim = tok.encode_fim(s, 0)
    assert torch.equal(fim[:3], ids[:3]) and g.accepts(fim[None]).all() and g.accepts(ids[None]).all()
    assert not g.accepts(ids[3:][None]).any()  # the plan comes first
    late = torch.cat([ids[:3], ids[:1], ids[3:]])
    assert not g.accepts(late[None]).any()  # and has exactly plan_len tokens
    batch = tok.encode_batch({"svg": [s, ICON]})
    assert torch.equal(batch[0, : len(ids)], ids) and g.accepts(batch).all()
    tok.save_pretrained(tmp_path / "t")
    assert load_target(tmp_path / "t").plan == (2, 4) and "plan=[2, 4]" in repr(tok)
    assert SVGTokenizer(plan=8).plan == (8,) and SVGTokenizer(plan=0).plan_len == 0


def test_canonical_order_starts_at_the_top_left_and_draws_the_same(tmp_path):
    tok, plain = SVGTokenizer(grid=64, max_len=256, canonical=True), SVGTokenizer(grid=64, max_len=256)
    # drawn bottom path first, each outline from its bottom-right corner
    s = (f'<svg {NS} viewBox="0 0 8 8"><path d="M7 7H5V5H7Z"/><path d="M4 3H1V1H4Z"/></svg>')
    ids = tok.encode(s)
    firsts = [ids[i + 2].item() - T.OFFSET for i in (ids == T.PATH).nonzero().flatten().tolist()]
    assert [(f % 64, f // 64) for f in firsts] == [(8, 8), (40, 40)]  # top-left corners, top path first
    assert raster_iou(tok.decode(ids), plain.decode(plain.encode(s))) == 1.0
    assert torch.equal(tok.encode(tok.decode(ids)), ids) and tok.grammar().accepts(ids[None]).all()
    assert raster_iou(tok.decode(tok.encode(ICON)), plain.decode(plain.encode(ICON))) == 1.0
    tok.save_pretrained(tmp_path / "t")
    assert load_target(tmp_path / "t").canonical and "canonical=True" in repr(tok)


@pytest.mark.parametrize("kwargs", [{"grid": 1}, {"grid": 64.0}, {"max_len": 2}, {"fim_rate": 1.5},
                                    {"plan": 17}, {"plan": -1}, {"plan": 2.0}, {"plan": [4, 1]}])
def test_constructor_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SVGTokenizer(**kwargs)
