"""Text tokenizer: training, round trips, padding, truncation, files."""

import json
import random

import pytest
import torch
from tokenizers import Tokenizer

from argen.data import shapes
from argen.text import SPECIALS, TextTokenizer


@pytest.fixture(scope="module")
def captions():
    rng = random.Random(0)
    return [shapes.caption(shapes.sample_scene(rng, "train")) for _ in range(3000)]


@pytest.fixture(scope="module")
def tok(captions):
    return TextTokenizer.train(captions, vocab_size=128)


def test_specials_and_size(tok):
    assert [tok.tokenizer.token_to_id(s) for s in SPECIALS] == [tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id]
    assert len({tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id}) == 4
    assert 4 < tok.vocab_size <= 128


def test_words_of_a_small_vocabulary_become_tokens(tok):
    # HF's Unigram trainer alone leaves the shapes captions as single characters.
    pieces = tok.tokenizer.encode("a red circle left of a small blue star").tokens
    assert "▁circle" in pieces and "▁blue" in pieces
    assert len(pieces) <= 14


def test_round_trip(tok, captions):
    ids, mask = tok.encode(captions[:200], max_len=64)
    assert tok.decode(ids) == captions[:200]
    assert (ids[:, 0] == tok.bos_id).all()
    lengths = mask.sum(1)
    assert (ids[torch.arange(len(ids)), lengths - 1] == tok.eos_id).all()
    assert (ids[~mask] == tok.pad_id).all()


def test_normalization(tok):
    a, _ = tok.encode(["A  RED\tCircle "], 32)
    b, _ = tok.encode(["a red circle"], 32)
    c, _ = tok.encode(["ａ ｒｅｄ ｃｉｒｃｌｅ"], 32)  # full-width: NFKC folds it
    assert torch.equal(a, b) and torch.equal(b, c)


def test_empty_caption_is_bos_eos(tok):
    ids, mask = tok.encode([""], 16)
    assert ids.tolist() == [[tok.bos_id, tok.eos_id]] and mask.all()
    assert tok.decode(ids) == [""]


def test_padding_to_longest_row(tok):
    ids, mask = tok.encode(["a red circle", "", "a green star above a large purple square"], 64)
    longest = len(tok.tokenizer.encode("a green star above a large purple square").ids)
    assert ids.shape == (3, longest) and mask.shape == (3, longest)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert mask[1].sum() == 2


def test_truncation_keeps_bos_eos_and_warns(tok):
    long = "a red circle left of a blue star " * 6
    with pytest.warns(UserWarning, match="a red circle left of"):
        ids, mask = tok.encode([long, "a red star"], 10, warn=True)
    assert ids.shape == (2, 10)
    assert ids[0, 0] == tok.bos_id and ids[0, -1] == tok.eos_id and mask[0].all()
    full = tok.tokenizer.encode(long).ids
    assert ids[0, :9].tolist() == full[:9]


def test_unknown_characters_map_to_unk(tok):
    ids, _ = tok.encode(["a red ☃ circle"], 32)
    assert tok.unk_id in ids[0].tolist()


def test_save_load(tok, tmp_path):
    path = tok.save(tmp_path / "sub" / "tokenizer.json")
    again = TextTokenizer.from_file(path)
    texts = ["a small yellow triangle", ""]
    assert torch.equal(again.encode(texts, 32)[0], tok.encode(texts, 32)[0])
    plain = Tokenizer.from_file(str(path))  # loads without argen, and frames rows the same way
    assert plain.encode("a red star").ids == tok.encode(["a red star"], 32)[0][0].tolist()
    assert TextTokenizer.from_str(tok.to_str()).vocab_size == tok.vocab_size


def test_bad_files(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        TextTokenizer.from_file(tmp_path / "nope.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ValueError, match="garbage.json"):
        TextTokenizer.from_file(garbage)
    state = json.loads(tok.to_str())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] != "<bos>"]
    state["model"]["vocab"] = [v for v in state["model"]["vocab"] if v[0] != "<bos>"]
    state["post_processor"] = None
    broken = tmp_path / "nobos.json"
    broken.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="<bos>"):
        TextTokenizer.from_file(broken)


def test_bad_arguments(tok):
    with pytest.raises(TypeError, match="list"):
        tok.encode("a red circle", 8)
    with pytest.raises(ValueError, match="max_len"):
        tok.encode(["a"], 1)
    with pytest.raises(ValueError, match="vocab_size"):
        TextTokenizer.train(["a b"], vocab_size=3)
    with pytest.raises(TypeError, match="strings"):
        TextTokenizer.train(["a red circle", 3], vocab_size=50)


def test_larger_corpus_uses_requested_size():
    from argen.data.icons import caption, load_icons

    tok = TextTokenizer.train((caption(slug) for slug, _ in load_icons()), vocab_size=500)
    assert tok.vocab_size == 500
    assert tok.decode(tok.encode(["account arrow down outline"], 32)[0]) == ["account arrow down outline"]
