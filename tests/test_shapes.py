"""The shapes dataset: scenes, captions, held-out pairs, rendering, and the scorer's two properties."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from argen.data import shapes as S

ACCURACY = 0.98  # issue 2: right ≥ 98% of the time on the dataset's own renders


def scenes(n, seed=0):
    rng = random.Random(seed)
    return [S.sample_scene(rng, "val" if i % 2 else "train") for i in range(n)]


def test_vocabulary():
    assert len(S.COLORS) == 6 and len(S.SHAPES) == 4 and S.SIZES == ("small", "large")
    assert set(S.RELATIONS) == {"left of", "right of", "above", "below"}
    assert set(S.HELD_OUT_PAIRS) == {("red", "star"), ("blue", "triangle"), ("green", "circle"), ("yellow", "square")}


def test_held_out_pairs_only_in_validation():
    rng = random.Random(1)
    train = {(o.color, o.shape) for _ in range(3000) for o in S.sample_scene(rng, "train").objects}
    assert not train & set(S.HELD_OUT_PAIRS)
    assert len(train) == 20
    val = [S.sample_scene(rng, "val") for _ in range(400)]
    with_held = sum(any((o.color, o.shape) in S.HELD_OUT_PAIRS for o in s.objects) for s in val)
    assert 0.4 < with_held / len(val) < 0.8
    with pytest.raises(ValueError, match="split"):
        S.sample_scene(rng, "test")


def test_seeded():
    a = [S.caption(s) for s in scenes(50, seed=3)]
    b = [S.caption(s) for s in scenes(50, seed=3)]
    assert a == b and len(set(a)) > 30


def test_scene_geometry():
    for s in scenes(500):
        assert len(s.objects) in (1, 2)
        for o in s.objects:
            assert S.MARGIN - 1e-9 <= o.x - o.extent / 2 and o.x + o.extent / 2 <= 1 - S.MARGIN + 1e-9
            assert S.EXTENT[o.size][0] <= o.extent <= S.EXTENT[o.size][1]
        if len(s.objects) == 2:
            a, b = s.objects
            assert (a.size, b.size) != ("large", "large")
            assert S.judge(S.scene_objects(s), S.caption(s))["full"]  # the relation holds
            sep = max(abs(a.x - b.x), abs(a.y - b.y)) - (a.extent + b.extent) / 2
            assert sep >= S.GAP - 1e-9  # no overlap


def test_captions_and_parsing():
    assert S.caption(S.Scene((S.Obj("red", "circle"),))) == "a red circle"
    assert S.caption(S.Scene((S.Obj("orange", "star"),))) == "an orange star"
    two = S.Scene((S.Obj("blue", "square"), S.Obj("green", "star", "small", say_size=True)), "left of")
    assert S.caption(two) == "a blue square left of a small green star"
    for s in scenes(300):
        text = S.caption(s)
        parsed = S.parse_caption(text)
        assert S.caption(parsed) == text
        assert parsed.relation == s.relation
        assert [(o.color, o.shape) for o in parsed.objects] == [(o.color, o.shape) for o in s.objects]
        assert [o.size for o in parsed.objects] == [o.size if o.say_size else None for o in s.objects]
    for bad in ("a red", "a pink circle", "a red circle near a blue star", "two red circles", ""):
        with pytest.raises(ValueError, match="not a shapes caption"):
            S.parse_caption(bad)


def test_prompt_suite():
    suite = S.prompt_suite()
    assert suite == S.prompt_suite()
    singles = {f"{'an' if c == 'orange' else 'a'} {c} {s}" for c in S.COLORS for s in S.SHAPES}
    assert singles <= set(suite)
    pairs = [S.parse_caption(p) for p in suite if len(S.parse_caption(p).objects) == 2]
    assert len(pairs) >= 32 and {p.relation for p in pairs} == set(S.RELATIONS)
    for held in S.HELD_OUT_PAIRS:
        assert sum(any((o.color, o.shape) == held for o in p.objects) for p in pairs) >= 2


def test_render():
    s = scenes(1)[0]
    img = S.render(s, 32)
    assert img.size == (32, 32) and img.mode == "RGB"
    assert S.render(s, 32).tobytes() == img.tobytes()
    big = np.asarray(S.render(s, 256), dtype=float)
    assert big.shape == (256, 256, 3)
    with pytest.raises(ValueError, match="16"):
        S.render(s, 8)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("degraded", [False, True], ids=["crisp", "blur+noise"])
def test_scorer_is_right_on_own_renders(size, degraded):
    cs = full = 0
    batch = scenes(150, seed=size + degraded)
    for i, s in enumerate(batch):
        img = S.render(s, size)
        if degraded:  # ~ a VQGAN reconstruction: blur of 0.8 px at 32 px, noise σ = 8/255
            img = S.degrade(img, blur=0.8 * size / 32, noise=8, seed=i)
        r = S.score(img, S.caption(s))
        cs += r["color_shape"]
        full += r["full"]
    assert cs / len(batch) >= ACCURACY
    assert full / len(batch) >= ACCURACY


@pytest.mark.parametrize("size", [32, 64])
def test_scorer_says_no_to_shuffled_pairs(size):
    batch = scenes(200, seed=10 + size)
    perm = list(range(len(batch)))
    random.Random(size).shuffle(perm)
    false_cs = yes_cs = false_full = yes_full = agree = 0
    for i, s in enumerate(batch):
        text = S.caption(batch[perm[i]])
        truth = S.judge(S.scene_objects(s), text)
        got = S.score(S.degrade(S.render(s, size), blur=0.8 * size / 32, noise=8, seed=i), text)
        agree += got["full"] == truth["full"]
        if not truth["color_shape"]:
            false_cs += 1
            yes_cs += got["color_shape"]
        if not truth["full"]:
            false_full += 1
            yes_full += got["full"]
    assert false_full > 150  # most shuffled pairs do not match
    assert yes_full / false_full <= 0.02 and yes_cs / false_cs <= 0.02
    assert agree / len(batch) >= ACCURACY


def test_scorer_checks_each_part():
    s = S.Scene((S.Obj("red", "circle", "large", 0.3, 0.5, 0.46), S.Obj("blue", "star", "small", 0.78, 0.5, 0.3)),
                "left of")
    img = S.render(s, 32)
    assert S.score(img, "a large red circle left of a small blue star")["full"]
    r = S.score(img, "a red circle right of a blue star")
    assert r["color_shape"] and not r["relation_ok"] and not r["full"]
    r = S.score(img, "a small red circle left of a blue star")
    assert r["color_shape"] and not r["size_ok"] and not r["full"]
    r = S.score(img, "a red circle")
    assert r["color_shape"] and not r["count_ok"] and not r["full"] and r["objects_found"] == 2
    assert not S.score(img, "a red square left of a blue star")["color_shape"]
    assert not S.score(img, "a green circle left of a blue star")["color_shape"]
    blank = Image.new("RGB", (32, 32), (240, 240, 240))
    assert S.score(blank, "a red circle")["objects_found"] == 0


def test_scorer_inputs():
    s = scenes(4)[2]
    img = S.render(s, 32)
    text = S.caption(s)
    arr = np.array(img)
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    assert S.score(arr, text)["full"] and S.score(arr / 255.0, text)["full"] and S.score(tensor, text)["full"]
    with pytest.raises(ValueError, match="RGB"):
        S.score(np.zeros((32, 32)), text)
