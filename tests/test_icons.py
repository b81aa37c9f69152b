"""The icons dataset: the pack, captions, the held-out split, and shards written and read back."""

import json
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

from argen.data import icons
from argen.data.shards import shard_stats


@pytest.fixture(scope="module")
def pack():
    return icons.load_icons()


def test_pack(pack):
    assert len(pack) == 7447
    slugs = [s for s, _ in pack]
    assert slugs == sorted(slugs) and len(set(slugs)) == len(slugs)
    assert all(svg.startswith("<svg") and "<path" in svg for _, svg in pack[:50])


def test_caption():
    assert icons.caption("account-arrow-down-outline") == "account arrow down outline"
    assert icons.caption("numeric-1-box") == "numeric 1 box"


def test_split(pack):
    splits = [icons.split_of(s) for s, _ in pack]
    assert splits == [icons.split_of(s) for s, _ in pack]  # deterministic
    share = splits.count("val") / len(splits)
    assert 0.03 < share < 0.07
    by_slug = dict(zip((s for s, _ in pack), splits))
    pairs = [(s, s + "-outline") for s in by_slug if s + "-outline" in by_slug]
    assert len(pairs) > 1000 and all(by_slug[a] == by_slug[b] for a, b in pairs)


def test_prepare_svg_shards(tmp_path):
    # the concepts all eight installed sets draw (a few hundred icons: quick), through the real CLI
    out = tmp_path / "icons"
    subprocess.run([sys.executable, "-m", "argen.data", "prepare", "icons", "--out", str(out), "--format", "svg",
                    "--common", "8"], check=True, capture_output=True, timeout=600)
    train, val = sorted(out.glob("train-*.tar")), sorted(out.glob("val-*.tar"))
    assert len(train) >= 16 and val
    s = shard_stats([str(p) for p in train + val], progress=False)
    stats = json.loads((out / "stats.json").read_text())
    assert s["samples"] == stats["totals"]["train"] + stats["totals"]["val"] >= 100
    assert s["svgs"] == s["samples"] and s["skipped"] == 0 and s["images"] == 0
    subprocess.run([sys.executable, "-m", "argen.data", "tokenizer", "--shards", str(out / "train-*.tar"),
                    "--vocab-size", "200", "--out", str(out / "tok.json")], check=True, capture_output=True,
                   timeout=300)
    tok = Tokenizer.from_file(str(out / "tok.json"))
    assert tok.get_vocab_size() == 200
    assert tok.decode(tok.encode("arrow down").ids) == "arrow down"
