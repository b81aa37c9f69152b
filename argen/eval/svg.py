"""``argen.eval svg``: validity, Uniqueness, Novelty (IconShop's definitions), FID on rasters,
prompt fidelity and a contact sheet for a text->SVG generator.

Prompts default to held-out icons (the ``val`` split of :mod:`argen.data.icons`, never trained on),
so each prompt has a reference drawing: "IoU to reference" says how close the samples come to it.
Novelty compares samples with the training icons as the model saw them, ``decode(encode(svg))``
with the export's own tokenizer, so a memorised icon is not called novel because of quantization.
FID compares rasters of the valid samples with rasters of the held-out icons; its reference row
does the same for as many training icons (through the tokenizer): a perfect model's value.

With ``corpus=DIR`` (a folder written by ``python -m argen.data prepare icons``) the training icons
are that corpus's train shards, all of them, also those longer than the model's ``max_len`` (so
novelty is checked against more drawings than the model saw), the prompts default to its held-out
(concept, set) drawings (``DIR/eval/heldout.tsv``), and **recognisability** is measured: the share
of samples whose nearest training icon (64 px mask IoU, over the whole training set) carries the
prompted concept. Its floor pairs each sample with another prompt's concept (prompts shuffled,
averaged over shuffles); its ceiling puts the real held-out icons in place of the samples.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from argen.data.icons import caption, load_icons, split_of
from argen.eval import check_generator
from argen.eval.cache import Cache
from argen.eval.fid import FID, fid_kid
from argen.eval.prompts import PromptRow, read_prompts
from argen.eval.report import Report, sampling_text
from argen.generator import Generator
from argen.slug import slug
from argen.svg import SVGError
from argen.svg.metrics import novelty as novelty_of
from argen.svg.metrics import pairwise_iou, raster_masks, uniqueness
from argen.svg.rasterize import rasterize

DEFAULT_PROMPTS = 32


def heldout_icons(n: int | None = DEFAULT_PROMPTS) -> list[PromptRow]:
    """``n`` held-out icons spread evenly over the sorted ``val`` split (all of them for None)."""

    slugs = [s for s, _ in load_icons() if split_of(s) == "val"]
    if n is not None and n < len(slugs):
        slugs = [slugs[int(round(i))] for i in np.linspace(0, len(slugs) - 1, n)]
    return [PromptRow(caption(s), "outline" if s.endswith("-outline") else "filled", "held-out icon",
                      {"slug": s}) for s in slugs]


def placeholder(size: int, text: str = "invalid") -> Image.Image:
    img = Image.new("RGB", (size, size), (235, 225, 225))
    ImageDraw.Draw(img).text((4, size // 2 - 6), text, fill=(160, 40, 40))
    return img


def raster(svg: str, size: int) -> Image.Image:
    """The SVG drawn on white, or a placeholder when it does not render."""

    try:
        return rasterize(svg, size)
    except SVGError:
        return placeholder(size)


def training_icons(tokenizer, limit: int | None = None, progress: bool = True) -> list[str]:
    """Training-split icons as the model saw them (:func:`through_tokenizer`; refused or too long: left out).

    ``limit`` takes that many, spread evenly over the sorted split (for quick checks only).
    """

    icons = [svg for s, svg in load_icons() if split_of(s) == "train"]
    if limit is not None and limit < len(icons):
        icons = [icons[int(round(i))] for i in np.linspace(0, len(icons) - 1, limit)]
    bar = tqdm(icons, desc="tokenizing training icons", unit=" icons", disable=not progress)
    return [svg for svg in through_tokenizer(tokenizer, bar) if svg is not None]


def corpus_icons(folder: str | Path, split: str) -> list[dict[str, Any]]:
    """``{"key", "svg", "json"}`` of every sample in ``folder/{split}-*.tar``, sorted by key."""
    rows: dict[str, dict[str, Any]] = {}
    shards = sorted(Path(folder).glob(f"{split}-[0-9]*.tar"))
    if not shards:
        raise FileNotFoundError(f"no {split}-*.tar shards in {folder} (python -m argen.data prepare icons --out …)")
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = Path(member.name).name.partition(".")
                if ext in ("svg", "json"):
                    data = tar.extractfile(member).read().decode("utf-8")
                    rows.setdefault(key, {"key": key})[ext] = json.loads(data) if ext == "json" else data
    return [rows[k] for k in sorted(rows) if "svg" in rows[k]]


def through_tokenizer(tokenizer, svgs: Iterable[str], any_length: bool = False) -> list[str | None]:
    """``decode(encode(svg))``: what the model saw (None when refused, or longer than ``max_len``
    unless ``any_length``: a drawing too long to train on still shows what its concept looks like)."""
    out: list[str | None] = []
    for svg in svgs:
        try:
            ids = tokenizer.encode(svg)
            out.append(tokenizer.decode(ids) if any_length or len(ids) <= tokenizer.max_len else None)
        except SVGError:
            out.append(None)
    return out


def recognisability(masks: np.ndarray, valid: np.ndarray, concepts: list[str], train_masks: np.ndarray,
                    train_concepts: list[set[str]], shuffles: int = 20, seed: int = 0) -> dict[str, Any]:
    """Share of masks whose nearest training mask carries their concept (invalid ones count as misses),
    and the same with the concepts shuffled among the masks (the floor, mean of ``shuffles``)."""
    if not len(masks):
        return {"score": None, "floor": None, "n": 0}
    nearest = pairwise_iou(masks, train_masks).argmax(axis=1)
    near_concepts = [train_concepts[j] for j in nearest]
    hit = lambda cs: float(np.mean([bool(v) and c in near for v, c, near in zip(valid, cs, near_concepts)]))  # noqa: E731
    rng = np.random.default_rng(seed)
    floor = [hit([concepts[i] for i in rng.permutation(len(concepts))]) for _ in range(shuffles)]
    return {"score": hit(concepts), "floor": float(np.mean(floor)), "n": len(masks)}


def cached_masks(svgs: list[str], size: int = 64, progress: bool = True,
                 cache: Cache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~argen.svg.metrics.raster_masks` of ``svgs`` (masks ``(N, size²)`` bool, validity ``(N,)``),
    kept in ``cache`` (default: :class:`~argen.eval.cache.Cache`'s folder) under a hash of the texts.

    Rendering ~7,000 training icons takes half a minute; their masks only change with the
    tokenizer's grid (which changes the decoded texts) or the icon set, both covered by the hash.
    """

    def render() -> dict[str, torch.Tensor]:
        chunks = range(0, len(svgs), 256)
        parts = [raster_masks(svgs[i:i + 256], size) for i in tqdm(chunks, desc="rendering training icons",
                                                                    unit="x256", disable=not progress)]
        masks = np.concatenate([m for m, _ in parts]) if parts else np.zeros((0, size * size), bool)
        valid = np.concatenate([v for _, v in parts]) if parts else np.zeros(0, bool)
        return {"bits": torch.from_numpy(np.packbits(masks, axis=1)), "valid": torch.from_numpy(valid)}

    store = cache if cache is not None else Cache()
    key = store.key(size, hashlib.sha1("\0".join(svgs).encode()).hexdigest())
    entry = store.get("svg-masks", key, render)
    return np.unpackbits(entry["bits"].numpy(), axis=1, count=size * size).astype(bool), entry["valid"].numpy()


def evaluate_svg(export: str | Path, out: str | Path, prompts: str | Path | None = None,
                 num_prompts: int = DEFAULT_PROMPTS, num_samples: int = 2, seed: int = 0, batch_size: int = 64,
                 device: str = "cpu", features: str = "auto", inception_weights: str | None = None,
                 raster_size: int = 64, train_limit: int | None = None, cell: int = 96, wandb: bool = False,
                 progress: bool = True, speculative: bool | int = False,
                 corpus: str | Path | None = None, cache: str | Path | None | bool = None) -> dict[str, Any]:
    """Sample held-out icon prompts (or a TSV suite), measure, and write the report to ``out``.

    ``train_limit`` compares novelty with only that many training icons (quick checks; the
    report says how many were used). ``speculative``: sample by speculative decoding (see
    :meth:`argen.Generator.generate`). ``cache``: the folder keeping the training icons' masks and the
    real rasters' features between runs (:mod:`argen.eval.cache`; ``False``: none).
    """

    check_generator(export, "svg_tokenizer", "svg")
    if prompts is None and corpus is not None:
        prompts = Path(corpus) / "eval" / "heldout.tsv"
    rows = read_prompts(prompts) if prompts is not None else heldout_icons(num_prompts)
    if num_samples < 1:
        raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
    fid = FID(features, inception_weights, device)
    store = Cache(cache)
    gen = Generator.from_pretrained(export, device=device)
    report = Report(out, f"argen eval svg: {export}", {
        "subcommand": "svg", "export": str(export), "prompts": str(prompts) if prompts else "held-out icons",
        "num_prompts": len(rows), "num_samples": num_samples, "seed": seed, "sampling": gen.sampling.to_dict(),
        "tokenizer": repr(gen.target), "raster_size": raster_size, "train_limit": train_limit,
        "corpus": str(corpus) if corpus else None,
        "fid_features": fid.name, "speculative": speculative}, wandb)

    outputs = gen.generate([r.prompt for r in rows], num_samples=num_samples, seed=seed, batch_size=batch_size,
                           progress=progress, speculative=speculative)
    samples = [svg for per in outputs for svg in per]
    folder = report.out / "svg"
    folder.mkdir(exist_ok=True)
    for i, (r, per) in enumerate(zip(rows, outputs)):
        for j, svg in enumerate(per):
            (folder / f"{i:04d}-{j}-{slug(r.prompt, 40)}.svg").write_text(svg)

    # -- validity, uniqueness, novelty --------------------------------------------------------------
    masks, valid = raster_masks(samples)
    if corpus is None:
        train = training_icons(gen.target, train_limit, progress)
        train_concepts: list[set[str]] = []
        icons = dict(load_icons())
        refs = [icons.get(r.extra.get("slug", "")) for r in rows]
        real_svgs = [svg for s, svg in load_icons() if split_of(s) == "val"]
    else:
        items = corpus_icons(corpus, "train")
        if train_limit is not None and train_limit < len(items):
            items = [items[int(round(i))] for i in np.linspace(0, len(items) - 1, train_limit)]
        seen = through_tokenizer(gen.target, [it["svg"] for it in items], any_length=True)
        train = [s for s in seen if s is not None]
        train_concepts = [set(it["json"].get("concepts") or [it["json"].get("concept")])
                          for it, s in zip(items, seen) if s is not None]
        held = {it["key"]: it["svg"] for it in corpus_icons(corpus, "val")}
        refs = [held.get(r.extra.get("key", "")) for r in rows]
        real_svgs = list(held.values())
    train_masks, train_valid = cached_masks(train, progress=progress, cache=store)
    train_masks = train_masks[train_valid]
    train_concepts = [c for c, ok in zip(train_concepts, train_valid) if ok]  # empty without a corpus
    m: dict[str, Any] = {"samples": len(samples), "validity": float(valid.mean()),
                         "uniqueness": uniqueness(samples), "novelty": novelty_of(samples, train_masks),
                         "training_icons": len(train_masks)}

    # -- recognisability: the nearest training icon carries the prompted concept ---------------------
    if corpus is not None:
        concepts = [r.extra.get("concept") or r.prompt for r in rows for _ in range(num_samples)]
        rec = recognisability(masks, valid, concepts, train_masks, train_concepts, seed=seed)
        ref_ok = [(r, ref) for r, ref in zip(rows, refs) if ref is not None]
        real = through_tokenizer(gen.target, [x for _, x in ref_ok], any_length=True)
        ref_masks, ref_valid = raster_masks([s or "" for s in real])
        ceil = recognisability(ref_masks, ref_valid, [r.extra.get("concept") or r.prompt for r, _ in ref_ok],
                               train_masks, train_concepts, seed=seed)
        m["recognisability"] = {"samples": rec["score"], "floor_shuffled_prompts": rec["floor"],
                                "ceiling_real_heldout": ceil["score"], "n_samples": rec["n"],
                                "n_real": ceil["n"], "training_icons": len(train_masks)}

    # -- prompt fidelity: IoU of samples with the prompt's reference icon ----------------------------
    best, every, per_cat = [], [], {}
    for k, (r, ref) in enumerate(zip(rows, refs)):
        if ref is None:
            continue
        ref_mask, ok = raster_masks([ref])
        if not ok[0]:
            continue
        own = masks[k * num_samples:(k + 1) * num_samples]
        ious = pairwise_iou(own, ref_mask)[:, 0] * valid[k * num_samples:(k + 1) * num_samples]
        best.append(float(ious.max()))
        every.extend(ious.tolist())
        per_cat.setdefault(r.category, []).append(float(ious.max()))
    m["iou_to_reference_best"] = float(np.mean(best)) if best else None
    m["iou_to_reference_mean"] = float(np.mean(every)) if every else None
    m["prompts_with_reference"] = len(best)

    # -- FID on rasters -----------------------------------------------------------------------------
    fakes = [raster(s, raster_size) for s, ok in zip(samples, valid) if ok]
    real = [raster(s, raster_size) for s in real_svgs]
    rng = np.random.default_rng(seed)
    ref_train = [raster(train[i], raster_size)
                 for i in rng.choice(len(train), size=min(len(train), max(len(fakes), 2)), replace=False)]
    f_real = store.features(fid, real, "svg-heldout", progress)
    fid_ref = fid_kid(f_real, store.features(fid, ref_train, "svg-train"), seed=seed)
    if len(fakes) >= 2:
        fid_gen = fid_kid(f_real, fid.features(fakes, progress, "sample features"), seed=seed)
    else:
        fid_gen = {"fid": None, "kid_mean": None, "kid_std": None, "n_fake": len(fakes), "n_real": len(real)}
    m["fid"] = {**fid_gen, "features": fid.name, "raster_size": raster_size}
    m["reference"] = {"fid_train_vs_heldout": fid_ref["fid"], "kid_train_vs_heldout": fid_ref["kid_mean"],
                      "n_train": len(ref_train)}
    report.metrics = m

    # -- report -------------------------------------------------------------------------------------
    report.summary("validity", m["validity"], "parses strictly and renders", percent=True)
    report.summary("Uniqueness", m["uniqueness"], "valid samples identical (IoU ≥ 0.98) to no other sample",
                   percent=True)
    report.summary("Novelty", m["novelty"], f"valid samples identical to none of {m['training_icons']} training icons",
                   percent=True)
    report.summary("FID (rasters)", fid_gen["fid"],
                   f"{fid.name}; training icons vs held-out: {fid_ref['fid']:.4g}")
    report.summary("IoU to reference (best of samples)", m["iou_to_reference_best"],
                   f"{len(best)} prompts with a reference icon")
    if "recognisability" in m:
        r = m["recognisability"]
        ceiling = r["ceiling_real_heldout"]
        report.summary("Recognisability", r["samples"], f"floor (prompts shuffled) {r['floor_shuffled_prompts']:.1%}, "
                       "ceiling (real held-out icons) "
                       + (f"{ceiling:.1%}" if ceiling is not None else "n/a: no prompt names a held-out icon"),
                       percent=True)
        report.section("Recognisability", f"""
For each held-out (concept, set) prompt, the share of samples whose nearest training icon (64 px mask
IoU over all {r['training_icons']} training icons, as the model saw them) carries the prompted
concept's name; invalid samples are misses. **Floor**: the same samples scored against another
prompt's concept (prompts shuffled, mean of 20 shuffles). **Ceiling**: the real held-out icons in
place of the samples (how often a drawing of the concept from this set is nearest to the same concept
in the other sets).""")
        report.table("recognisability", [{"what": k, "value": v} for k, v in r.items()])
    report.section("Sample quality", f"""
{len(rows)} prompts × {num_samples} samples (seed {seed}; sampling: {sampling_text(gen.sampling.to_dict())}).
**Validity**: the strict parser accepts the SVG and resvg renders it. **Uniqueness**
(IconShop): share of valid samples identical to no other sample. **Novelty**: share of valid samples
identical to no training icon. *Identical* = raster IoU of 64 px masks ≥ 0.98. **IoU to reference**:
mask IoU with the icon the prompt names (held-out, never trained on); invalid samples count 0.""")
    report.table("svg_metrics", [{"metric": k, "value": m[k]} for k in
                                 ("samples", "validity", "uniqueness", "novelty", "iou_to_reference_best",
                                  "iou_to_reference_mean", "training_icons")])
    if per_cat:
        report.table("by_category", [{"category": c, "prompts": len(v), "iou_to_reference_best": float(np.mean(v))}
                                     for c, v in per_cat.items()])
    report.section("FID on rasters", f"""
Valid samples vs all {len(real)} held-out icons, drawn at {raster_size} px on white. Features:
**{fid.name}**. The reference row puts {len(ref_train)} training icons (through the tokenizer) in
place of the samples: what a model that draws like the data would get.""")
    report.table("fid", [{"set": "valid samples", "n": fid_gen["n_fake"], "FID": fid_gen["fid"],
                          "KID": fid_gen["kid_mean"]},
                         {"set": "training icons (reference)", "n": len(ref_train), "FID": fid_ref["fid"],
                          "KID": fid_ref["kid_mean"]}])
    report.section("Contact sheet", "Each row: the reference icon (when the prompt has one), then the samples. "
                   f"All samples are in `{folder.name}/`.")
    show = rows[:32]
    images, captions = [], []
    for k, r in enumerate(show):
        ref = refs[k]
        images.append(raster(ref, cell) if ref else placeholder(cell, "no reference"))
        captions.append(f"ref: {r.prompt}")
        for j, svg in enumerate(outputs[k]):
            images.append(raster(svg, cell))
            captions.append(f"sample {j + 1}" + ("" if valid[k * num_samples + j] else " (invalid)"))
    report.grid("contact-sheet", images, captions, "reference icon, then samples, one prompt per row",
                ncol=1 + num_samples, cell=cell)
    report.write()
    return m
