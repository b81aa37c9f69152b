"""``prepare icons``: one deduplicated text->SVG corpus from the installed icon sets.

Each icon (:mod:`argen.data.iconsets`) is encoded with the SVG tokenizer at grid 200 (strokes
outlined) and rendered by resvg at 64 px; icons the tokenizer refuses are counted by reason, and
icons whose 64 px masks are identical become one sample with their captions merged. The round trip
(original vs decoded tokens, 64 px raster IoU) is measured on the way, so ``stats.json`` is also
the per-set table of docs/svg.md.

**Captions** (``KEY.txt``), what a person would type: the name's words, the style when the set
has several and the name does not already say it, then ``"; "`` and up to :data:`MAX_TAGS` tags or
search terms where the set has them (Lucide tags and categories, Font Awesome search terms and
aliases). A merged duplicate's other names join the tags:
``"heart outline"``, ``"house solid; abode, building, home"``, ``"heart; like, love, emotion"``.

**Concepts**: a name's words without a style suffix (:func:`argen.data.iconsets.concept_of`), so
the same name in another set or style is the same concept.

**Splits.** ``common=0`` (the whole corpus): a concept goes to ``val`` when a hash of it falls in
the lowest :data:`VAL_PERCENT` percent, so every drawing of a concept is on one side.
``common=N`` (the demo): only concepts drawn by at least ``N`` sets (counting the icons read; the
stats then count only those icons); some (concept, set) pairs are
held out, every drawing of that concept in that set goes to ``val``, the concept's drawings in the
other sets stay in training. Both lists are written under ``OUT/eval/`` (``val-concepts.txt``,
``heldout-pairs.tsv``, and ``heldout.tsv``, a prompt suite for ``python -m argen.eval svg``).

**stats.json** per set: ``read = encoded + sum(refused)``, ``encoded = samples + duplicates``
(a duplicate is merged into an earlier sample), ``samples = train + val + not_common``; plus the
mean round-trip IoU and token-length percentiles at grid 200.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from argen.data.iconsets import SETS, Icon, installed, read_set, words
from argen.data.shards import default_per_shard, write_shards
from argen.svg import SVGError, SVGTokenizer
from argen.svg.metrics import raster_mask
from argen.svg.rasterize import rasterize

VAL_PERCENT = 5
HELDOUT_PERCENT = 12  # share of common concepts with one (concept, set) pair held out
MAX_TAGS = 6
ROUNDTRIP_GRID = 200
RASTER = 64
TARGETS = {False: 0.97, True: 0.95}  # round-trip IoU goal: filled sets, stroke-drawn sets


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "big") % 100


def caption(icon: Icon, extra_names: list[str] = ()) -> str:
    """The caption format of the module docstring."""
    name = words(icon.name)
    text = name if not icon.style or icon.style in name.split() else f"{name} {icon.style}"
    tags = [t for t in dict.fromkeys([*extra_names, *(words(t) for t in icon.tags)]) if t and t != name]
    return f"{text}; {', '.join(tags[:MAX_TAGS])}" if tags else text


def parse_sources(sources: str | list[str] | None) -> list[str]:
    """``"mdi,tabler"`` / ``["mdi"]`` / ``None`` or ``"all"`` (every installed set) -> set keys."""
    if sources is None or sources == "all" or sources == ["all"]:
        keys = installed()
        if not keys:
            raise ValueError("no icon set is installed: pip install 'argen[icons]'")
        return keys
    keys = [k.strip() for k in (sources.split(",") if isinstance(sources, str) else sources) if k.strip()]
    unknown = [k for k in keys if k not in SETS]
    if unknown:
        raise ValueError(f"unknown icon sets {unknown}; known: {', '.join(SETS)}")
    return keys


# -- the measurement each icon goes through (in worker processes) ---------------------------------

_TOK = None


def measure(svg: str, grid: int = ROUNDTRIP_GRID) -> dict[str, Any]:
    """Encode at ``grid``, render original and decoded tokens at 64 px: the mask's hash, token
    count and round-trip IoU, or the refusal's reason."""
    global _TOK
    if _TOK is None or _TOK.grid != grid:
        _TOK = SVGTokenizer(grid=grid, max_len=1 << 20)
    try:
        ids = _TOK.encode(svg)
        original = raster_mask(svg, RASTER)
        decoded = raster_mask(_TOK.decode(ids), RASTER)
    except SVGError as e:
        return {"reason": e.reason}
    finally:
        _TOK._cache.clear()  # every icon is seen once here
    union = int((original | decoded).sum())
    iou = int((original & decoded).sum()) / union if union else 1.0
    if not original.any():
        return {"reason": "empty"}
    return {"hash": hashlib.sha1(np.packbits(original).tobytes()).hexdigest(), "tokens": len(ids),
            "iou": iou}


def _measure_job(args):
    return measure(*args)


def measure_all(svgs: list[str], grid: int = ROUNDTRIP_GRID, workers: int | None = None,
                progress: bool = True, desc: str = "icons") -> list[dict[str, Any]]:
    workers = workers or min(2, os.cpu_count() or 1)
    jobs = [(s, grid) for s in svgs]
    bar = dict(total=len(jobs), desc=desc, unit=" icons", disable=not progress)
    if workers <= 1 or len(jobs) < 64:
        return [measure(*j) for j in tqdm(jobs, **bar)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return list(tqdm(pool.imap(_measure_job, jobs, chunksize=16), **bar))


def roundtrip_table(stats: dict[str, Any]) -> str:
    """The per-set markdown table of docs/svg.md from ``stats.json``'s ``sets``."""
    lines = ["| set | read | encoded | refused (by reason) | mean IoU at 64 px | goal | tokens p50 / p90 / p99 |",
             "|---|---|---|---|---|---|---|"]
    for key, s in stats["sets"].items():
        refused = ", ".join(f"{r} {n}" for r, n in sorted(s["refused"].items())) or "0"
        t = s["tokens"]
        lines.append(f"| {key} | {s['read']} | {s['encoded']} ({100 * s['encoded'] / max(s['read'], 1):.1f}%) | "
                     f"{refused} | {s['iou']:.4f} | {s['goal']} | {t['p50']:.0f} / {t['p90']:.0f} / {t['p99']:.0f} |")
    return "\n".join(lines)


# -- the corpus ----------------------------------------------------------------------------------

def build(sources: str | list[str] | None = None, common: int = 0, roots: dict[str, Path] | None = None,
          workers: int | None = None, progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Read, measure, deduplicate and split: ``(samples, stats)``; each sample is a dict with
    ``key``, ``svg``, ``txt``, ``json`` and ``split``."""
    keys = parse_sources(sources)
    roots = roots or {}
    icons: list[Icon] = []
    for k in keys:
        icons.extend(read_set(k, roots.get(k)))
    read_concepts: dict[str, set[str]] = defaultdict(set)
    for icon in icons:
        read_concepts[icon.concept].add(icon.set)
    if common:  # only the common concepts are measured and counted
        icons = [i for i in icons if len(read_concepts[i.concept]) >= common]
    results = measure_all([i.svg for i in icons], workers=workers, progress=progress)

    stats: dict[str, Any] = {"sources": keys, "common": common, "grid": ROUNDTRIP_GRID, "raster": RASTER,
                             "sets": {}}
    per: dict[str, dict[str, Any]] = {k: {"read": 0, "encoded": 0, "refused": Counter(), "duplicates": 0,
                                          "samples": 0, "ious": [], "lens": []} for k in keys}
    groups: dict[str, list[int]] = {}
    order: list[str] = []
    for i, (icon, r) in enumerate(zip(icons, results)):
        s = per[icon.set]
        s["read"] += 1
        if "reason" in r:
            s["refused"][r["reason"]] += 1
            continue
        s["encoded"] += 1
        s["ious"].append(r["iou"])
        s["lens"].append(r["tokens"])
        if r["hash"] in groups:
            s["duplicates"] += 1
            groups[r["hash"]].append(i)
        else:
            s["samples"] += 1
            groups[r["hash"]] = [i]
            order.append(r["hash"])

    # concepts by the number of sets drawing them (over every encoded icon)
    concept_sets: dict[str, set[str]] = defaultdict(set)
    for members in groups.values():
        for i in members:
            concept_sets[icons[i].concept].add(icons[i].set)
    common_concepts = sorted(c for c, s in concept_sets.items() if common and len(s) >= common)
    heldout: set[tuple[str, str]] = set()
    for c in common_concepts:
        if _bucket("heldout:" + c) < HELDOUT_PERCENT:
            sets = sorted(concept_sets[c])
            heldout.add((c, sets[_bucket("set:" + c) % len(sets)]))
    val_concepts = sorted(c for c in concept_sets if _bucket(c) < VAL_PERCENT)
    common_set, val_set = set(common_concepts), set(val_concepts)

    samples: list[dict[str, Any]] = []
    for h in order:
        members = [icons[i] for i in groups[h]]
        first = members[0]
        concepts = list(dict.fromkeys(m.concept for m in members))
        if common:
            if not any(c in common_set for c in concepts):
                split = None
            else:
                split = "val" if any((m.concept, m.set) in heldout for m in members) else "train"
        else:
            split = "val" if first.concept in val_set else "train"
        extra = [words(m.name) for m in members[1:]]
        meta = {"set": first.set, "name": first.name, "style": first.style, "licence": first.licence,
                "tags": first.tags, "concept": first.concept, "concepts": concepts,
                "caption": caption(first, extra), "split": split, "dataset": "icons",
                "sources": [{"set": m.set, "name": m.name, "style": m.style, "licence": m.licence}
                            for m in members]}
        if first.label:
            meta["label"] = first.label
        key = f"{first.set}-{first.style or 'default'}-{first.name}".replace(".", "_")
        samples.append({"key": key, "svg": first.svg, "txt": meta["caption"], "json": meta, "split": split})
    for s in samples:
        p = per[s["json"]["set"]]
        p[s["split"] or "not_common"] = p.get(s["split"] or "not_common", 0) + 1

    for k, s in per.items():
        lens = np.array(s.pop("lens") or [0])
        ious = s.pop("ious")
        stats["sets"][k] = {**s, "refused": dict(s["refused"]), "train": s.get("train", 0),
                            "val": s.get("val", 0), "not_common": s.get("not_common", 0),
                            "iou": float(np.mean(ious)) if ious else float("nan"),
                            "goal": TARGETS[SETS[k].stroked],
                            "tokens": {f"p{q}": float(np.percentile(lens, q)) for q in (50, 90, 99)}}
        for extra in ("train", "val", "not_common"):
            s.pop(extra, None)
    totals = Counter()
    for s in stats["sets"].values():
        for f in ("read", "encoded", "duplicates", "samples", "train", "val", "not_common"):
            totals[f] += s[f]
    stats["totals"] = dict(totals)
    stats["concepts"] = len(concept_sets)
    stats["common_concepts"] = len(common_concepts)
    stats["val_concepts"] = len(val_concepts)
    stats["heldout_pairs"] = len(heldout)
    stats["_lists"] = {"val_concepts": val_concepts, "heldout": sorted(heldout), "common": common_concepts}
    return samples, stats


def check_stats(stats: dict[str, Any]) -> None:
    """Raise if the per-set counts do not add up."""
    for k, s in stats["sets"].items():
        if s["read"] != s["encoded"] + sum(s["refused"].values()):
            raise AssertionError(f"{k}: read {s['read']} != encoded + refused")
        if s["encoded"] != s["samples"] + s["duplicates"]:
            raise AssertionError(f"{k}: encoded {s['encoded']} != samples + duplicates")
        if s["samples"] != s["train"] + s["val"] + s["not_common"]:
            raise AssertionError(f"{k}: samples {s['samples']} != train + val + not_common")


def write_lists(out: Path, samples: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    lists = stats["_lists"]
    ev = out / "eval"
    ev.mkdir(parents=True, exist_ok=True)
    (ev / "val-concepts.txt").write_text(
        "# concepts of the corpus val split (every drawing of each, all sets)\n"
        + "".join(c + "\n" for c in lists["val_concepts"]))
    (ev / "heldout-pairs.tsv").write_text(
        "# (concept, set) pairs held out of the demo: the concept trains from other sets only\nconcept\tset\n"
        + "".join(f"{c}\t{s}\n" for c, s in lists["heldout"]))
    rows = sorted({(s["txt"].split(";")[0], s["json"]["concept"], s["json"]["set"], s["key"])
                   for s in samples if s["split"] == "val" and stats["common"]})
    (ev / "heldout.tsv").write_text(
        "# held-out (concept, set) drawings: prompt = caption without tags; key = the real icon\n"
        "prompt\tcategory\tchallenge\tconcept\tkey\n"
        + "".join(f"{p}\t{st}\theld-out (concept, set)\t{c}\t{k}\n" for p, c, st, k in rows))


def _png(svg: str, size: int) -> bytes:
    buf = io.BytesIO()
    rasterize(svg, size).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def prepare(out: str | Path, sources: str | list[str] | None = None, common: int = 0, format: str = "svg",
            size: int = 256, per_shard: int | None = None, progress: bool = True,
            roots: dict[str, Path] | None = None, workers: int | None = None) -> dict[str, Any]:
    """Write ``out/{train,val}-NNNNNN.tar``, ``out/stats.json`` and ``out/eval/``; return the stats."""
    if format not in ("svg", "png"):
        raise ValueError(f"icons format must be 'svg' or 'png', got {format!r}")
    out = Path(out)
    samples, stats = build(sources, common, roots, workers, progress)
    check_stats(stats)
    for split in ("train", "val"):
        rows = [s for s in samples if s["split"] == split]

        def gen(rows=rows):
            for s in rows:
                sample = {"__key__": s["key"], "txt": s["txt"], "json": s["json"]}
                if format == "svg":
                    sample["svg"] = s["svg"].encode("utf-8")
                else:
                    sample["png"] = _png(s["svg"], size)
                yield sample
        write_shards(gen(), out, split, per_shard or default_per_shard(len(rows)), total=len(rows),
                     progress=progress)
    write_lists(out, samples, stats)
    public = {k: v for k, v in stats.items() if not k.startswith("_")}
    (out / "stats.json").write_text(json.dumps(public, indent=2) + "\n")
    return public
