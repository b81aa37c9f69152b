"""Emoji image–caption shards from open emoji packs, as ``npm pack`` leaves them.

    npm pack emoji-datasource-google@16.0.0 emoji-datasource-twitter@16.0.0 @lobehub/fluent-emoji-3d@1.1.0
    python -m argen.data prepare emoji --from emoji-datasource-*.tgz lobehub-fluent-emoji-3d-*.tgz --out data/emoji64

Packs (tarballs or unpacked folders; the ``package/`` folder or the one above it):

- ``emoji-datasource-<vendor>``: ``img/<vendor>/64/<code points>.png`` plus ``emoji.json`` (name, category,
  subcategory, skin variations). The palette-quantized ``sheets-*`` files are not used.
- ``@lobehub/fluent-emoji-3d``: ``assets/<code points>.webp`` (256 px renders) and no text: its images
  are joined by code point to the ``emoji.json`` of a datasource pack given in the same command.

Every image is composited on white and resized through argen's one preprocessing path, then written
as ``KEY.png`` + ``KEY.txt`` + ``KEY.json`` (img2dataset layout). A caption is what a person would
type, naming the vendor so that style can be asked for::

    <name>[, <skin tone>], <subcategory words>, <vendor> style
    fox, animal mammal, twitter style
    father christmas, medium-dark skin tone, person fantasy, fluent 3d style

Splits, by concept (an emoji with all its skin tones, in every vendor): ``val`` holds whole concepts
never trained on. From the remaining concepts, some (concept, vendor) pairs are held out: the concept
is trained in the other vendors' styles but never in this one. Their images go to ``heldout`` shards
and the pairs to ``heldout.tsv`` (the repository's copy: ``eval/emoji-heldout.tsv``), which
``python -m argen.eval emoji`` prompts. Choices come from hashes of the code points, so they do not
depend on the order or the number of packs given.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import re
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argen.data.shards import default_per_shard, write_shards
from argen.images import prepare_image

VENDORS = ("google", "twitter", "fluent3d")
VENDOR_WORDS = {"google": "google", "twitter": "twitter", "fluent3d": "fluent 3d"}
# Licences of the images (the packs' package.json licence is that of the packaging code).
LICENCES = {"google": "Apache-2.0 (Noto Emoji)", "twitter": "CC-BY-4.0 (Twemoji)", "fluent3d": "MIT (Fluent Emoji)"}
SKIN_TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark", "1F3FF": "dark"}
SKIP_CATEGORIES = ("Component",)  # skin-tone swatches and hair parts: not emoji a person asks for
HELDOUT_COLUMNS = ("concept", "vendor", "name", "category", "subcategory", "prompt", "key")


@dataclass
class Pack:
    """One pack: its vendor, image bytes by normalised code points, and emoji.json when it has one."""

    vendor: str
    source: str
    images: dict[str, bytes] = field(default_factory=dict)
    emoji_json: list[dict] | None = None


def norm_codes(codes: str) -> str:
    """``"1F385-1F3FB"``, ``"1f385-1f3fb.png"``, ``"2764-FE0F"`` -> ``"1f385-1f3fb"``, ``"2764"``: a join key
    that ignores case, file extension and variation selectors (packs disagree on FE0F)."""
    stem = re.sub(r"\.(png|webp|svg)$", "", codes.strip().lower())
    parts = [p for p in re.split(r"[-_ ]", stem) if p and p != "fe0f"]
    if not parts or not all(re.fullmatch(r"[0-9a-f]{2,6}", p) for p in parts):
        raise ValueError(f"{codes!r} is not a code point sequence")
    return "-".join(parts)


def _vendor_of(package_name: str, source: str) -> str:
    m = re.fullmatch(r"emoji-datasource-([a-z]+)", package_name)
    if m and m.group(1) in VENDORS:
        return m.group(1)
    if package_name == "@lobehub/fluent-emoji-3d":
        return "fluent3d"
    if m and m.group(1) in ("apple", "facebook"):
        raise ValueError(f"{source}: the {m.group(1)} emoji licence does not allow this use; use google, "
                         "twitter or @lobehub/fluent-emoji-3d")
    raise ValueError(f"{source}: unsupported emoji pack {package_name!r}; supported: "
                     "emoji-datasource-google, emoji-datasource-twitter, @lobehub/fluent-emoji-3d")


def _members(source: str) -> Iterator[tuple[str, Any]]:
    """``(path relative to the package root, loader)`` for every file of a tarball or folder."""
    path = Path(source)
    if path.is_dir():
        root = path / "package" if (path / "package" / "package.json").is_file() else path
        if not (root / "package.json").is_file():
            raise ValueError(f"{source}: no package.json here or in {source}/package (an npm pack folder?)")
        for dirpath, _, files in os.walk(root):
            for f in files:
                full = Path(dirpath) / f
                yield full.relative_to(root).as_posix(), full.read_bytes
        return
    if not path.is_file():
        raise FileNotFoundError(f"emoji pack {source} does not exist")
    try:
        tar = tarfile.open(path, "r:*")
    except tarfile.TarError as e:
        raise ValueError(f"{source}: not a tarball or a folder ({e})") from e
    with tar:
        for m in tar:
            if m.isfile():
                name = m.name.split("/", 1)[1] if "/" in m.name else m.name  # strip npm's "package/"
                yield name, (lambda m=m: tar.extractfile(m).read())


def read_pack(source: str | os.PathLike) -> Pack:
    """Read one pack's images (only those of the vendor's 64 px folder or 3-D assets) and emoji.json."""
    source = os.fspath(source)
    images: dict[str, bytes] = {}
    meta: dict[str, bytes] = {}
    for name, load in _members(source):
        if name in ("package.json", "emoji.json"):
            meta[name] = load()
        elif re.fullmatch(r"img/[a-z]+/64/[^/]+\.png|assets/[^/]+\.webp", name):
            try:
                images[norm_codes(name.rsplit("/", 1)[1])] = load()
            except ValueError:
                continue  # not an emoji image (none are in the packs checked)
    if "package.json" not in meta:
        raise ValueError(f"{source}: no package.json (not an npm pack)")
    vendor = _vendor_of(json.loads(meta["package.json"]).get("name", ""), source)
    if not images:
        raise ValueError(f"{source}: no images found (expected img/{vendor}/64/*.png or assets/*.webp)")
    emoji_json = json.loads(meta["emoji.json"]) if "emoji.json" in meta else None
    return Pack(vendor, source, images, emoji_json)


# -- captions -------------------------------------------------------------------------------------
def emoji_name(entry: dict) -> str:
    """Lower-case name a person would type: ``"FATHER CHRISTMAS"`` -> ``"father christmas"``."""
    name = entry.get("name") or (entry.get("short_names") or [entry.get("short_name", "")])[0].replace("_", " ")
    name = name.lower().replace(":", "").replace("_", " ")
    return re.sub(r"\s+", " ", name).strip()


def skin_tone_words(tone: str | None) -> str | None:
    """``"1F3FD"`` -> ``"medium skin tone"``; ``"1F3FB-1F3FF"`` -> ``"light and dark skin tones"``."""
    if not tone:
        return None
    parts = [SKIN_TONES[t] for t in tone.upper().split("-")]
    if len(set(parts)) == 1:
        return f"{parts[0]} skin tone"
    return f"{' and '.join(parts)} skin tones"


def caption(name: str, subcategory: str, vendor: str, tone: str | None = None) -> str:
    """``<name>[, <skin tone>], <subcategory words>, <vendor> style``."""
    parts = [name] + ([skin_tone_words(tone)] if tone else []) + [subcategory.replace("-", " "),
                                                                  f"{VENDOR_WORDS[vendor]} style"]
    return ", ".join(parts)


# -- the catalogue --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One drawable emoji: a concept (base code points) in one skin tone (or none)."""

    concept: str  # normalised code points of the base emoji
    codes: str  # normalised code points of this variant
    unified: str  # emoji.json's code points
    tone: str | None
    name: str
    category: str
    subcategory: str


def catalogue(emoji_json: list[dict]) -> list[Variant]:
    """Every variant in emoji.json (base emoji and skin tones), Component emoji left out."""
    out = []
    for e in emoji_json:
        if e.get("category") in SKIP_CATEGORIES or not e.get("unified"):
            continue
        base = norm_codes(e["unified"])
        common = dict(concept=base, name=emoji_name(e), category=e["category"], subcategory=e.get("subcategory", ""))
        out.append(Variant(codes=base, unified=e["unified"], tone=None, **common))
        for tone, v in sorted((e.get("skin_variations") or {}).items()):
            out.append(Variant(codes=norm_codes(v["unified"]), unified=v["unified"], tone=tone, **common))
    return out


def _unit(*parts: str) -> float:
    """A number in [0, 1) from a hash of ``parts``: stable across runs, machines and pack order."""
    h = hashlib.sha1("\0".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_concepts(concepts: Sequence[str], vendors_of: dict[str, set[str]], val_fraction: float,
                   heldout_pairs: int, seed: int) -> tuple[set[str], dict[str, str]]:
    """``(val concepts, {concept: held-out vendor})``.

    Held-out pairs are spread evenly over the vendors, and only drawn from concepts that at least two
    vendors draw (so the concept is still trained in another style).
    """
    val = {c for c in concepts if _unit("val", str(seed), c) < val_fraction}
    vendors = sorted({v for vs in vendors_of.values() for v in vs})
    held: dict[str, str] = {}
    if vendors and heldout_pairs > 0 and len(vendors) > 1:
        per_vendor = {v: heldout_pairs // len(vendors) + (i < heldout_pairs % len(vendors))
                      for i, v in enumerate(vendors)}
        pool = sorted((c for c in concepts if c not in val and len(vendors_of[c]) > 1),
                      key=lambda c: _unit("heldout", str(seed), c))
        for c in pool:
            options = [v for v in sorted(vendors_of[c], key=lambda v: _unit("vendor", str(seed), c, v))
                       if per_vendor[v] > 0]
            if options:
                held[c] = options[0]
                per_vendor[options[0]] -= 1
            if not any(per_vendor.values()):
                break
    return val, held


# -- writing --------------------------------------------------------------------------------------
def _sample(v: Variant, vendor: str, data: bytes, size: int) -> dict[str, Any]:
    img = prepare_image(data, size)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    meta = {"code_points": v.unified, "concept": v.concept, "name": v.name, "category": v.category,
            "subcategory": v.subcategory, "vendor": vendor, "skin_tone": skin_tone_words(v.tone),
            "licence": LICENCES[vendor]}
    key = f"{vendor}-{v.codes}"
    return {"__key__": key, "png": buf.getvalue(), "txt": caption(v.name, v.subcategory, vendor, v.tone),
            "json": json.dumps(meta, sort_keys=True).encode()}


def prepare(packs: Sequence[str | os.PathLike], out: str | Path, size: int = 64, val_fraction: float = 0.05,
            heldout_pairs: int = 150, seed: int = 0, per_shard: int | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Write ``out/{train,val,heldout}-NNNNNN.tar``, ``out/heldout.tsv`` and ``out/counts.json``."""
    if not packs:
        raise ValueError("give at least one emoji pack (--from)")
    if size < 8:
        raise ValueError(f"size must be ≥ 8 px, got {size}")
    loaded = [read_pack(p) for p in packs]
    seen = Counter(p.vendor for p in loaded)
    if dup := [v for v, n in seen.items() if n > 1]:
        raise ValueError(f"vendor(s) {dup} given more than once")
    emoji_json = next((p.emoji_json for p in loaded if p.emoji_json is not None), None)
    if emoji_json is None:
        raise ValueError("no pack carries emoji.json: the Fluent 3D pack has no names or categories, so give an "
                         "emoji-datasource pack (google or twitter) in the same command")
    variants = catalogue(emoji_json)
    # Images per (vendor, variant); a vendor image without a catalogue entry is counted, not guessed at.
    by_codes = {v.codes: v for v in variants}
    items: list[tuple[Variant, str, bytes]] = []
    unmatched: Counter[str] = Counter()
    for p in loaded:
        for codes, data in p.images.items():
            if codes in by_codes:
                items.append((by_codes[codes], p.vendor, data))
            else:
                unmatched[p.vendor] += 1
    vendors_of: dict[str, set[str]] = {}
    for v, vendor, _ in items:
        if v.tone is None:
            vendors_of.setdefault(v.concept, set()).add(vendor)
    concepts = sorted(vendors_of)
    val, held = split_concepts(concepts, vendors_of, val_fraction, heldout_pairs, seed)

    splits: dict[str, list] = {"train": [], "val": [], "heldout": []}
    for v, vendor, data in items:
        if v.concept not in vendors_of:
            continue  # a skin tone whose base image this vendor lacks: no concept to file it under
        split = "val" if v.concept in val else "heldout" if held.get(v.concept) == vendor else "train"
        splits[split].append((v, vendor, data))
    rng = random.Random(seed)
    counts: dict[str, Any] = {"size": size, "packs": {p.vendor: os.path.basename(p.source.rstrip("/")) for p in loaded},
                              "unmatched_images": dict(unmatched), "splits": {}}
    out = Path(out)
    for split, rows in splits.items():
        rows.sort(key=lambda r: (r[1], r[0].codes))
        rng.shuffle(rows)  # mix vendors and categories within every shard
        n = len(rows)
        if n:
            write_shards((_sample(v, vendor, data, size) for v, vendor, data in rows), out, split,
                         per_shard or default_per_shard(n), total=n, progress=progress)
        per_vendor = Counter(vendor for _, vendor, _ in rows)
        counts["splits"][split] = {"images": n, "concepts": len({v.concept for v, _, _ in rows}),
                                   "per_vendor": dict(sorted(per_vendor.items()))}
    write_heldout_tsv(out / "heldout.tsv", heldout_rows(splits["heldout"]))
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    return counts


def heldout_rows(items: Sequence[tuple[Variant, str, bytes]]) -> list[dict[str, str]]:
    """One row per held-out (concept, vendor) pair, prompted with the base emoji's caption."""
    rows = []
    for v, vendor, _ in items:
        if v.tone is None:
            rows.append({"concept": v.concept, "vendor": vendor, "name": v.name, "category": v.category,
                         "subcategory": v.subcategory, "prompt": caption(v.name, v.subcategory, vendor),
                         "key": f"{vendor}-{v.codes}"})
    return sorted(rows, key=lambda r: (r["vendor"], r["concept"]))


def write_heldout_tsv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, HELDOUT_COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def read_heldout_tsv(path: str | Path) -> list[dict[str, str]]:
    """The held-out pairs of a ``heldout.tsv``; a missing column is an error naming it."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise ValueError(f"{path}: no held-out pairs")
    missing = [c for c in ("vendor", "category", "prompt", "key") if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {', '.join(HELDOUT_COLUMNS)}")
    return rows
