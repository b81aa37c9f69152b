"""argen.transformer.model: presets, causality, padding invariance, features, checkpointing."""

import json

import pytest
import torch

from argen.transformer import PRESETS, EncoderDecoder, TransformerConfig, config_from_preset

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


SMALL = dict(text_vocab_size=50, target_vocab_size=20, max_text_len=16, max_target_len=24, d_model=32,
             n_heads=4, enc_layers=2, dec_layers=2, d_ff=64)


def small_model(**overrides) -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(TransformerConfig(**{**SMALL, **overrides})).eval()


def batch(B=2, S=6, L=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, 50, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.bool)
    targets = torch.randint(0, 20, (B, L), generator=g)
    return text, mask, targets


@pytest.mark.parametrize("name, nominal", [("parti-350m", 350e6), ("parti-750m", 750e6),
                                           ("parti-3b", 3e9), ("parti-20b", 20e9)])
def test_parti_presets_match_paper_sizes_on_meta_device(name, nominal):
    with torch.device("meta"):
        model = EncoderDecoder(config_from_preset(name))
    n = model.num_parameters()
    assert abs(n - nominal) / nominal < 0.10, f"{name}: {n / 1e6:.0f}M params"
    assert n > model.num_parameters(exclude_embeddings=True)
    c = model.config
    assert len(model.encoder) == c.enc_layers and len(model.decoder) == c.dec_layers  # FSDP wraps blocks


def test_parti_presets_use_paper_shapes():
    assert PRESETS["parti-3b"]["d_model"] == 2048 and PRESETS["parti-20b"]["dec_layers"] == 64
    c = config_from_preset("parti-350m")
    assert (c.text_vocab_size, c.max_text_len, c.target_vocab_size, c.max_target_len) == (16384, 128, 8192, 1024)


def test_config_overrides_and_json_round_trip():
    c = config_from_preset("demo", target_vocab_size=77, target_feature_sizes=[3, 4])
    assert c.target_vocab_size == 77 and c.target_feature_sizes == (3, 4)
    assert TransformerConfig(**json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="parti-1t"), "unknown transformer preset"),
    (dict(name="demo", d_modle=8), "unknown TransformerConfig field"),
    (dict(name="demo", d_model=30, n_heads=4), "divisible"),
    (dict(name="demo", norm="batchnorm"), "norm must be one of"),
    (dict(name="demo", dec_layers=0), "dec_layers must be >= 1"),
])
def test_bad_configs_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_from_preset(**kwargs)


def test_forward_shapes_bos_and_shift_right():
    model = small_model()
    text, mask, targets = batch()
    inputs = model.shift_right(targets)
    assert model.bos_id == 20
    assert inputs[:, 0].eq(20).all() and torch.equal(inputs[:, 1:], targets[:, :-1])
    assert model(text, mask, inputs).shape == (2, 10, 20)


def test_future_targets_never_change_earlier_logits():
    model = small_model()
    text, mask, targets = batch()
    changed = targets.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 20
    a = model(text, mask, model.shift_right(targets))
    b = model(text, mask, model.shift_right(changed))
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=1e-6, rtol=0)  # input 7 is the first change
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-4)


def test_text_padding_never_changes_logits():
    model = small_model()
    text, mask, targets = batch(S=5)
    inputs = model.shift_right(targets)
    want = model(text, mask, inputs)
    for pad_len, fill in ((3, 0), (7, 13)):  # any ids in masked slots
        padded = torch.cat([text, torch.full((2, pad_len), fill)], 1)
        pmask = torch.cat([mask, torch.zeros(2, pad_len, dtype=torch.bool)], 1)
        torch.testing.assert_close(model(padded, pmask, inputs), want, atol=1e-5, rtol=1e-5)
    other = text.clone()
    other[:, 2] = (other[:, 2] + 1) % 50  # a real token does change them
    assert not torch.allclose(model(other, mask, inputs), want, atol=1e-4)


def test_empty_caption_row_gives_finite_logits():
    model = small_model()
    text, mask, targets = batch()
    mask[1] = False
    logits = model(text, mask, model.shift_right(targets))
    assert torch.isfinite(logits).all()


def test_feature_tables_enter_the_decoder_input():
    model = small_model(target_feature_sizes=(4, 5))
    text, mask, targets = batch()
    inputs = model.shift_right(targets)
    feats = torch.zeros(2, 10, 2, dtype=torch.long)
    a = model(text, mask, inputs, feats)
    feats[:, 3, 1] = 4
    b = model(text, mask, inputs, feats)
    torch.testing.assert_close(a[:, :3], b[:, :3], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 3], b[:, 3], atol=1e-4)
    with pytest.raises(ValueError, match="features must be"):
        model(text, mask, inputs, feats[..., :1])
    with pytest.raises(ValueError, match="no target feature tables"):
        small_model()(text, mask, inputs, feats)


def test_length_limits_are_clear_errors():
    model = small_model()
    text, mask, targets = batch(S=17)
    with pytest.raises(ValueError, match="max_text_len"):
        model.encode(text, mask)
    text, mask, targets = batch(L=25)
    with pytest.raises(ValueError, match="max_target_len"):
        model(text, mask, model.shift_right(targets))


def test_activation_checkpointing_gives_same_loss_and_gradients():
    text, mask, targets = batch()

    def loss_and_grads(checkpointing):
        model = small_model(checkpointing=checkpointing).train()
        logits = model(text, mask, model.shift_right(targets))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_a, grads_a = loss_and_grads(False)
    loss_b, grads_b = loss_and_grads(True)
    torch.testing.assert_close(loss_a, loss_b)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-5)


def test_untied_head_and_tied_head():
    tied, untied = small_model(), small_model(tie_embeddings=False)
    assert untied.num_parameters() - tied.num_parameters() == 20 * 32
    text, mask, targets = batch()
    assert untied(text, mask, untied.shift_right(targets)).shape == (2, 10, 20)


def test_feature_head_scores_ids_by_their_features():
    """With feature_head, an id's output row is its token row plus its features' rows, so ids sharing a
    feature share that part of their logit; the packed (CPU decoding) head scores the same rows."""
    with pytest.raises(ValueError, match="feature_head needs target_feature_sizes"):
        small_model(feature_head=True)
    model = small_model(target_feature_sizes=(4, 5), feature_head=True)
    id_features = torch.stack([torch.arange(20) % 4, torch.arange(20) // 4], 1)
    model.set_id_features(id_features)
    with pytest.raises(ValueError, match="id features must be"):
        model.set_id_features(id_features[:, :1])
    hidden = torch.randn(3, 32)
    x_rows, y_rows = model.feature_emb[0].weight, model.feature_emb[1].weight
    want = hidden @ (model.target_emb.weight[:20] + x_rows[id_features[:, 0]] + y_rows[id_features[:, 1]]).T
    torch.testing.assert_close(model.logits(hidden), want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # without autograd the summed rows are made once, then reused
        torch.testing.assert_close(model.logits(hidden), want, atol=1e-5, rtol=1e-5)
        assert model.output_weight() is model.output_weight()
        model.target_emb.weight.zero_()  # an in-place change of a table invalidates them
        y_rows.zero_()
        logits = model.logits(hidden)  # only x is left: ids 0, 4, 8 (x = 0) score alike, id 1 (x = 1) not
    torch.testing.assert_close(logits[:, 0], logits[:, 4]) and torch.testing.assert_close(logits[:, 0], logits[:, 8])
    assert not torch.allclose(logits[:, 0], logits[:, 1])
    assert "id_features" in model.state_dict()  # exported with the weights
    with pytest.raises(ValueError, match="feature_head=True"):
        small_model(target_feature_sizes=(4, 5)).set_id_features(id_features)


def test_cached_decode_step_matches_forward():
    model = small_model(target_feature_sizes=(3,))
    text, mask, targets = batch(L=8)
    mask[0, 4:] = False
    inputs = model.shift_right(targets)
    feats = (inputs % 3)[..., None]
    want = model(text, mask, inputs, feats)
    model.setup_cache(model.encode(text, mask), mask, 8)
    pos = torch.arange(8)
    got = [model.decode_step(inputs[:, :3], feats[:, :3], pos[:3], kv_len=3)]  # prefill
    for t in range(3, 8):
        got.append(model.decode_step(inputs[:, t : t + 1], feats[:, t : t + 1], pos[t : t + 1], kv_len=t + 1))
    torch.testing.assert_close(torch.stack(got, 1), want[:, 2:], atol=1e-5, rtol=1e-5)
    # static shapes (the compiled step's path, otherwise only in the slow suite): decode_step builds the
    # position mask itself, for a prefill and for single steps over the whole cache
    model.clear_cache()  # fresh buffers: nothing left from the eager pass
    model.setup_cache(model.encode(text, mask), mask, 8)
    got = [model.decode_step(inputs[:, :3], feats[:, :3], pos[:3])]
    for t in range(3, 8):
        got.append(model.decode_step(inputs[:, t : t + 1], feats[:, t : t + 1], pos[t : t + 1]))
    torch.testing.assert_close(torch.stack(got, 1), want[:, 2:], atol=1e-5, rtol=1e-5)
    model.clear_cache()
    with pytest.raises(RuntimeError, match="setup_cache"):
        model.decode_step(inputs[:, :1], feats[:, :1], pos[:1])


def test_guided_decode_step_shares_first_self_attention_and_matches_forward():
    """[cond; uncond] rows read the same tokens: the first layer's self-attention runs once for both."""
    model = small_model(target_feature_sizes=(3,))
    text, mask, targets = batch(L=8)
    uncond, uncond_mask = torch.zeros_like(text), torch.zeros_like(mask)
    uncond_mask[:, 0] = True
    rows, rows_mask = torch.cat([text, uncond]), torch.cat([mask, uncond_mask])
    inputs = model.shift_right(targets)
    feats = (inputs % 3)[..., None]
    full = model.decode(model.encode(rows, rows_mask), rows_mask, inputs.repeat(2, 1), feats.repeat(2, 1, 1))
    want = torch.stack([model.guided_logits(full[:, t], 2.5) for t in range(8)], 1)
    model.setup_cache(model.encode(rows, rows_mask), rows_mask, 8, guided=True)
    assert model.decoder[0].self_attn.cache.k.shape[0] == 2  # B token rows, not 2B
    assert model.decoder[1].self_attn.cache.k.shape[0] == 4
    pos = torch.arange(8)
    got = [model.decode_step(inputs[:, :3], feats[:, :3], pos[:3], kv_len=3, cfg_scale=2.5)]
    for t in range(3, 8):
        got.append(model.decode_step(inputs[:, t : t + 1], feats[:, t : t + 1], pos[t : t + 1], kv_len=t + 1,
                                     cfg_scale=2.5))
    torch.testing.assert_close(torch.stack(got, 1), want[:, 2:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cfg_scale"):
        model.decode_step(inputs[:, :1], feats[:, :1], pos[:1], kv_len=1)
    with pytest.raises(ValueError, match="odd"):
        model.setup_cache(model.encode(text[:1], mask[:1]), mask[:1], 8, guided=True)
