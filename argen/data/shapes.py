"""``shapes``: procedural scenes of one or two coloured shapes, their captions, and a scorer.

Scenes are seeded and unlimited. Four colour/shape pairs (:data:`HELD_OUT_PAIRS`) never occur in
training scenes, only in validation, to measure compositional generalization.

Geometry is in fractions of the image side, so a scene renders at any size; objects are sized to
stay recognisable at 32 px (small ≈ 9–11 px, large ≈ 14–16.5 px across). Two large objects never
share a scene: side by side they would not fit into 32 px with a gap between them.

:func:`score` reads an image back (colour segmentation, then template matching of each object's
silhouette) and checks it against a caption. It is built for blurry, noisy reconstructions too:
colours are matched by direction from the background colour, which blending with the background
does not change, and sizes and positions come from soft (sub-pixel) coverage profiles.
"""

from __future__ import annotations

import io
import itertools
import math
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from argen.data.shards import default_per_shard, write_shards

COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star")
SIZES = ("small", "large")
RELATIONS = ("left of", "right of", "above", "below")
HELD_OUT_PAIRS = (("red", "star"), ("blue", "triangle"), ("green", "circle"), ("yellow", "square"))

RGB = {"red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 90, 225),
       "yellow": (235, 200, 20), "purple": (140, 60, 190), "orange": (245, 130, 20)}
EXTENT = {"small": (0.28, 0.34), "large": (0.44, 0.52)}  # bounding-box side / image side
SIZE_SPLIT = 0.39  # read back: extent below this is small
MARGIN = 0.02  # object to image edge
GAP = 0.06  # between the two objects along the relation's axis
STAR_INNER = 0.45  # inner/outer radius: fatter than a pentagram, so points survive 32 px


@dataclass(frozen=True)
class Obj:
    """One object. ``x, y`` (centre of its bounding box) and ``extent`` are fractions of the side."""

    color: str
    shape: str
    size: str | None = None  # None: not specified (a parsed caption that does not say)
    x: float = 0.5
    y: float = 0.5
    extent: float = 0.0
    say_size: bool = False  # whether the caption mentions the size
    rgb: tuple[int, int, int] | None = None  # None: the colour's reference RGB


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    relation: str | None = None  # objects[0] <relation> objects[1]
    background: tuple[int, int, int] = (245, 245, 240)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        objs = tuple(Obj(**{**o, "rgb": tuple(o["rgb"]) if o.get("rgb") else None}) for o in d["objects"])
        return cls(objs, d.get("relation"), tuple(d.get("background", (245, 245, 240))))


# -- sampling and captions ------------------------------------------------------------------------
def _pairs(split: str) -> list[tuple[str, str]]:
    every = [(c, s) for c in COLORS for s in SHAPES]
    if split == "train":
        return [p for p in every if p not in HELD_OUT_PAIRS]
    if split == "val":
        return every
    raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def _obj(rng: random.Random, pair: tuple[str, str], size: str) -> Obj:
    jitter = tuple(int(min(255, max(0, v + rng.randint(-10, 10)))) for v in RGB[pair[0]])
    return Obj(pair[0], pair[1], size, extent=rng.uniform(*EXTENT[size]), say_size=rng.random() < 0.5,
               rgb=jitter)


def _place_pair(rng: random.Random, a: Obj, b: Obj, relation: str) -> tuple[Obj, Obj]:
    """Positions with ``a <relation> b``: separated by GAP along the relation's axis, and the
    offset across it at most half the offset along it, so the relation reads unambiguously."""
    axis = 0 if relation in ("left of", "right of") else 1
    first, second = (a, b) if relation in ("left of", "above") else (b, a)  # smaller coordinate first
    lo1, hi1 = first.extent / 2 + MARGIN, 1 - first.extent / 2 - MARGIN
    lo2, hi2 = second.extent / 2 + MARGIN, 1 - second.extent / 2 - MARGIN
    need = (first.extent + second.extent) / 2 + GAP
    if hi2 - need < lo1:
        raise ValueError(f"objects of extents {first.extent:.2f} and {second.extent:.2f} do not fit side by side")
    u1 = rng.uniform(lo1, hi2 - need)
    u2 = rng.uniform(u1 + need, hi2)
    d = u2 - u1
    v1 = rng.uniform(lo1, hi1)
    v2 = rng.uniform(max(lo2, v1 - d / 2), min(hi2, v1 + d / 2))
    p1, p2 = ((u1, v1), (u2, v2)) if axis == 0 else ((v1, u1), (v2, u2))
    first, second = replace(first, x=p1[0], y=p1[1]), replace(second, x=p2[0], y=p2[1])
    return (first, second) if relation in ("left of", "above") else (second, first)


def sample_scene(rng: random.Random, split: str) -> Scene:
    """A random scene. ``train`` never uses :data:`HELD_OUT_PAIRS`; in ``val`` half of the scenes
    hold at least one of them."""
    pairs = _pairs(split)
    base = rng.randint(232, 250)
    background = tuple(min(255, base + rng.randint(-6, 6)) for _ in range(3))
    n = rng.choice((1, 2))
    chosen = [rng.choice(pairs) for _ in range(n)]
    if split == "val" and rng.random() < 0.5:
        chosen[rng.randrange(n)] = rng.choice(HELD_OUT_PAIRS)
    if n == 1:
        o = _obj(rng, chosen[0], rng.choice(SIZES))
        lo, hi = o.extent / 2 + MARGIN, 1 - o.extent / 2 - MARGIN
        return Scene((replace(o, x=rng.uniform(lo, hi), y=rng.uniform(lo, hi)),), None, background)
    sizes = rng.choice((("small", "small"), ("small", "large"), ("large", "small")))
    relation = rng.choice(RELATIONS)
    a, b = _place_pair(rng, _obj(rng, chosen[0], sizes[0]), _obj(rng, chosen[1], sizes[1]), relation)
    return Scene((a, b), relation, background)


def _phrase(o: Obj) -> str:
    words = ([o.size] if o.say_size and o.size else []) + [o.color, o.shape]
    return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


def caption(scene: Scene) -> str:
    """``"a red circle"``, ``"a blue square left of a small green star"``."""
    text = _phrase(scene.objects[0])
    if len(scene.objects) == 2:
        text += f" {scene.relation} {_phrase(scene.objects[1])}"
    return text


_WORD = r"(?:(small|large)\s+)?(" + "|".join(COLORS) + r")\s+(" + "|".join(SHAPES) + ")"
_CAPTION = re.compile(rf"^an?\s+{_WORD}(?:\s+({'|'.join(RELATIONS)})\s+an?\s+{_WORD})?$")


def parse_caption(text: str) -> Scene:
    """A shapes caption -> a :class:`Scene` with the colours, shapes, sizes (None where the caption
    does not say) and relation it names; positions are left at their defaults."""
    m = _CAPTION.match(" ".join(text.lower().split()).rstrip("."))
    if not m:
        raise ValueError(f"not a shapes caption: {text!r} (expected e.g. 'a red circle' or "
                         "'a blue square left of a small green star')")
    size1, color1, shape1, relation, size2, color2, shape2 = m.groups()
    objs = [Obj(color1, shape1, size1, say_size=size1 is not None)]
    if relation:
        objs.append(Obj(color2, shape2, size2, say_size=size2 is not None))
    return Scene(tuple(objs), relation)


def prompt_suite() -> list[str]:
    """All 24 colour/shape singles, then 40 fixed two-object prompts (each held-out pair in 4)."""
    prompts = [caption(Scene((Obj(c, s),))) for c in COLORS for s in SHAPES]
    rng = random.Random(1234)
    every = [(c, s) for c in COLORS for s in SHAPES]
    for i in range(40):
        pair_a, pair_b = rng.choice(every), rng.choice(every)
        if i < 16:  # each held-out pair four times, on either side of the relation
            held = HELD_OUT_PAIRS[i % 4]
            pair_a, pair_b = (held, pair_b) if i % 8 < 4 else (pair_a, held)
        sizes = rng.choice(((None, None), ("small", None), (None, "large"), ("large", "small")))
        objs = tuple(Obj(c, s, z, say_size=z is not None) for (c, s), z in zip((pair_a, pair_b), sizes))
        prompts.append(caption(Scene(objs, RELATIONS[i % 4])))
    return prompts


# -- rendering ------------------------------------------------------------------------------------
def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, e: float, fill) -> None:
    """Draw a shape whose bounding box (side ``e`` px, or e x its aspect) is centred at (cx, cy)."""
    if shape == "circle":
        draw.ellipse([cx - e / 2, cy - e / 2, cx + e / 2, cy + e / 2], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - e / 2, cy - e / 2, cx + e / 2, cy + e / 2], fill=fill)
    elif shape == "triangle":  # equilateral, apex up: width e, height e·√3/2
        h = e * math.sqrt(3) / 2
        draw.polygon([(cx, cy - h / 2), (cx + e / 2, cy + h / 2), (cx - e / 2, cy + h / 2)], fill=fill)
    elif shape == "star":  # five points up; width 2R·sin72° = e
        r_out = e / (2 * math.sin(math.radians(72)))
        top, bottom = -r_out, r_out * math.cos(math.radians(36))
        oy = cy - (top + bottom) / 2
        pts = []
        for k in range(10):
            r = r_out if k % 2 == 0 else r_out * STAR_INNER
            a = math.radians(-90 + 36 * k)
            pts.append((cx + r * math.cos(a), oy + r * math.sin(a)))
        draw.polygon(pts, fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes are {SHAPES}")


def _supersample(size: int) -> int:
    return 8 if size <= 64 else 4 if size <= 128 else 2


def render(scene: Scene, size: int) -> Image.Image:
    """The scene as an RGB image of ``size`` x ``size`` (anti-aliased by supersampling)."""
    if size < 16:
        raise ValueError(f"render size must be ≥ 16 px, got {size}")
    ss = _supersample(size)
    big = size * ss
    img = Image.new("RGB", (big, big), tuple(scene.background))
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        _draw(draw, o.shape, o.x * big, o.y * big, o.extent * big, tuple(o.rgb or RGB[o.color]))
    return img.resize((size, size), Image.Resampling.BOX)


def _template(shape: str, cx: float, cy: float, e: float, box: tuple[int, int, int, int]) -> np.ndarray:
    """Coverage (0..1) of a shape in the pixel window ``box`` = (x0, y0, x1, y1) of the image."""
    x0, y0, x1, y1 = box
    ss = 8
    img = Image.new("L", ((x1 - x0) * ss, (y1 - y0) * ss), 0)
    _draw(ImageDraw.Draw(img), shape, (cx - x0) * ss, (cy - y0) * ss, e * ss, 255)
    return np.asarray(img.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), dtype=np.float32) / 255.0


# -- reading images back --------------------------------------------------------------------------
def _as_array(image) -> np.ndarray:
    """PIL image, (H, W, 3) array (uint8 or float in [0, 1]) or (3, H, W) tensor -> float (H, W, 3) 0..255."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    if hasattr(image, "detach"):  # torch tensor, channels first
        image = image.detach().float().cpu().numpy()
        if image.ndim == 3 and image.shape[0] == 3:
            image = image.transpose(1, 2, 0)
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"score needs an RGB image, got an array of shape {a.shape}")
    return a * 255.0 if a.max(initial=0) <= 1.0 else a


def detect(image) -> list[dict[str, Any]]:
    """The objects in an image: colour, shape, size, centre ``x, y`` and ``extent`` (fractions)."""
    a = _as_array(image)
    h, w, _ = a.shape
    if h > 96:  # 64 px holds all the scorer needs; larger images only cost time
        img = Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))
        a = np.asarray(img.resize((max(1, round(w * 64 / h)), 64), Image.Resampling.BOX), dtype=np.float32)
        h, w, _ = a.shape
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    bg = np.median(border, axis=0)
    diff = a - bg  # (H, W, 3)
    protos = np.array([RGB[c] for c in COLORS], dtype=np.float32) - bg  # (K, 3)
    alpha = np.einsum("hwc,kc->hwk", diff, protos) / (protos**2).sum(1)  # coverage along each colour
    cos = np.einsum("hwc,kc->hwk", diff, protos / np.linalg.norm(protos, axis=1, keepdims=True))
    k = cos.argmax(-1)  # colour = direction from the background, whatever the coverage
    a_best = np.take_along_axis(alpha, k[..., None], -1)[..., 0]
    fg = a_best > 0.5
    min_area = max(3, int(0.008 * h * w))
    objects = []
    for ci, color in enumerate(COLORS):
        labels, n = ndimage.label(fg & (k == ci), structure=np.ones((3, 3)))
        for lab in range(1, n + 1):
            m = labels == lab
            if m.sum() < min_area:
                continue
            objects.append(_describe(m, alpha[..., ci], color, w, h))
    return objects


def _shape_constants() -> dict[str, tuple[float, float]]:
    """Per shape: area and centroid's offset below the bounding-box centre, at extent 1."""
    out = {}
    n = 400
    yy = (np.arange(n) + 0.5) / n - 0.5
    for s in SHAPES:
        img = Image.new("L", (n, n), 0)
        _draw(ImageDraw.Draw(img), s, n / 2, n / 2, n, 255)
        a = np.asarray(img, dtype=np.float64) / 255.0
        out[s] = (a.mean(), float((a.sum(1) * yy).sum() / a.sum()))
    return out


SHAPE_AREA_OFFSET = _shape_constants()


def _describe(mask: np.ndarray, alpha: np.ndarray, color: str, w: int, h: int) -> dict[str, Any]:
    """Blur keeps an object's mass (summed coverage) and centroid; from those, each shape
    hypothesis gives an extent and a box centre. The hypothesis whose silhouette, blurred like
    the observation, fits best names the shape."""
    near = ndimage.binary_dilation(mask, iterations=max(2, math.ceil(w / 20)))
    soft = np.where(near, alpha, 0.0)
    mass = float(soft.sum())
    ys, xs = np.nonzero(near)
    cx = float((soft.sum(0) * (np.arange(w) + 0.5)).sum() / mass)
    cy = float((soft.sum(1) * (np.arange(h) + 0.5)).sum() / mass)
    pad = max(2, math.ceil(w / 16))
    box = (max(0, xs.min() - pad), max(0, ys.min() - pad), min(w, xs.max() + pad + 1), min(h, ys.max() + pad + 1))
    sigma = max(0.8, w / 40)
    patch = ndimage.gaussian_filter(np.clip(soft, 0, 1)[box[1]:box[3], box[0]:box[2]], sigma)
    fits = {}
    for s, (area, offset) in SHAPE_AREA_OFFSET.items():
        e = math.sqrt(max(mass, 1e-6) / area)
        t = ndimage.gaussian_filter(_template(s, cx, cy - offset * e, e, box), sigma)
        fits[s] = (float(((patch - t) ** 2).sum()), e, cy - offset * e)
    shape = min(fits, key=lambda s: fits[s][0])
    _, e, by = fits[shape]
    return {"color": color, "shape": shape, "size": "small" if e / w < SIZE_SPLIT else "large",
            "x": cx / w, "y": by / h, "extent": e / w, "area": int(mask.sum())}


def _relation_holds(relation: str, a: dict, b: dict) -> bool:
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    if relation == "left of":
        return dx > 0 and abs(dx) > abs(dy)
    if relation == "right of":
        return dx < 0 and abs(dx) > abs(dy)
    if relation == "above":
        return dy > 0 and abs(dy) > abs(dx)
    if relation == "below":
        return dy < 0 and abs(dy) > abs(dx)
    raise ValueError(f"unknown relation {relation!r}")


def score(image, caption: str) -> dict[str, Any]:
    """Check an image against a shapes caption.

    Returns ``color_shape`` (every object the caption names is there with its colour and shape),
    ``full`` (also the right number of objects, the sizes the caption gives and the relation),
    the parts ``count_ok``, ``size_ok``, ``relation_ok``, and what was found (``objects_found``,
    ``objects``).
    """
    return judge(detect(image), caption)


def judge(found: list[dict[str, Any]], caption: str) -> dict[str, Any]:
    """What :func:`score` decides once the objects are found. With :func:`scene_objects` it gives
    the ground truth for a known scene (e.g. to check the scorer on mismatched pairs)."""
    spec = parse_caption(caption)
    want = spec.objects
    best = (False, False, False)
    for chosen in itertools.permutations(range(len(found)), len(want)):
        got = [found[i] for i in chosen]
        cs = all(g["color"] == o.color and g["shape"] == o.shape for g, o in zip(got, want))
        size = all(o.size is None or g["size"] == o.size for g, o in zip(got, want))
        rel = spec.relation is None or _relation_holds(spec.relation, got[0], got[1])
        best = max(best, (cs, cs and size, cs and size and rel))
    count_ok = len(found) == len(want)
    return {"color_shape": best[0], "full": best[2] and count_ok, "count_ok": count_ok,
            "size_ok": best[1], "relation_ok": best[2], "objects_found": len(found), "objects": found}


def scene_objects(scene: Scene) -> list[dict[str, Any]]:
    """A scene's objects in the form :func:`detect` reports them."""
    return [{"color": o.color, "shape": o.shape, "size": o.size, "x": o.x, "y": o.y, "extent": o.extent}
            for o in scene.objects]


def degrade(image: Image.Image, blur: float = 0.8, noise: float = 8.0, seed: int = 0) -> Image.Image:
    """Gaussian blur (px) and Gaussian noise (σ in 0..255), like a VQGAN reconstruction's blur."""
    img = image.filter(ImageFilter.GaussianBlur(blur)) if blur > 0 else image
    a = np.asarray(img, dtype=np.float32)
    a = a + np.random.default_rng(seed).normal(0, noise, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))


# -- shards ---------------------------------------------------------------------------------------
def samples(split: str, n: int, size: int, seed: int = 0):
    """``n`` webdataset samples (PNG + caption + scene JSON) of a split, reproducible from ``seed``."""
    rng = random.Random(f"shapes:{split}:{seed}")
    for i in range(n):
        scene = sample_scene(rng, split)
        buf = io.BytesIO()
        render(scene, size).save(buf, format="PNG")
        text = caption(scene)
        yield {"__key__": f"{i:09d}", "png": buf.getvalue(), "txt": text,
               "json": {"caption": text, "split": split, "width": size, "height": size,
                        "dataset": "shapes", "scene": scene.to_dict()}}


def prepare(out: str | Path, train: int = 20000, val: int = 512, size: int = 32, seed: int = 0,
            per_shard: int | None = None, progress: bool = True) -> dict[str, list[Path]]:
    """Write ``out/train-NNNNNN.tar`` and ``out/val-NNNNNN.tar`` shapes shards."""
    if train < 1 or val < 0:
        raise ValueError(f"shapes needs train ≥ 1 and val ≥ 0 samples, got train={train} val={val}")
    written = {}
    for split, n in (("train", train), ("val", val)):
        if n:
            written[split] = write_shards(samples(split, n, size, seed), out, split,
                                          per_shard or default_per_shard(n), total=n, progress=progress)
    return written
