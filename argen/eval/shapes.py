"""``argen.eval shapes``: does a text->image model on the built-in shapes draw what it is told?

Prompt following is read back from the pixels by :func:`argen.data.shapes.score` (colour
segmentation + silhouette matching): ``color_shape`` = every named object is there with its colour
and shape; ``full`` = also the object count, the stated sizes and the relation. The suite is
:func:`argen.data.shapes.prompt_suite` (24 singles + 40 two-object prompts, 16 of them with a
held-out colour/shape pair never seen in training).

Every prompt gets ``num_samples`` samples, ordered by the model's own reranking (conditional minus
unconditional log-likelihood). "Without reranking" is the mean over all samples, i.e. the accuracy
of one random sample; "reranked" is the accuracy of the top-ranked one. A CFG sweep repeats a
stratified subset of prompts at several guidance scales, and FID/KID compare all samples with fresh
renders of held-out (validation) scenes. Two reference rows say what "perfect" reads as: the
scorer's accuracy on real renders, and the FID of a second set of real renders.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from argen.data import shapes
from argen.eval import check_generator
from argen.eval.cache import Cache
from argen.eval.fid import FID, fid_kid
from argen.eval.report import Report
from argen.generator import Generator

DEFAULT_SCALES = (1.0, 2.0, 3.0, 5.0)


def prompt_tags(prompt: str) -> dict[str, Any]:
    """What a shapes prompt asks for: object count, pairs, held-out pairs, relation, sizes."""
    scene = shapes.parse_caption(prompt)
    pairs = [(o.color, o.shape) for o in scene.objects]
    return {"objects": len(pairs), "pairs": pairs, "held_out": any(p in shapes.HELD_OUT_PAIRS for p in pairs),
            "relation": scene.relation, "size_given": any(o.size for o in scene.objects)}


def groups(prompts: Sequence[str]) -> list[tuple[str, str, list[int]]]:
    """``(kind, name, prompt indices)`` of every breakdown group with at least one prompt."""
    tags = [prompt_tags(p) for p in prompts]
    out: list[tuple[str, str, list[int]]] = [("all", "all prompts", list(range(len(prompts))))]
    out.append(("objects", "single object", [i for i, t in enumerate(tags) if t["objects"] == 1]))
    out.append(("objects", "two objects", [i for i, t in enumerate(tags) if t["objects"] == 2]))
    out.append(("held-out", "held-out pair in prompt", [i for i, t in enumerate(tags) if t["held_out"]]))
    out.append(("held-out", "only seen pairs", [i for i, t in enumerate(tags) if not t["held_out"]]))
    for r in shapes.RELATIONS:
        out.append(("relation", r, [i for i, t in enumerate(tags) if t["relation"] == r]))
    for c in shapes.COLORS:
        out.append(("attribute", f"colour {c}", [i for i, t in enumerate(tags) if any(p[0] == c for p in t["pairs"])]))
    for s in shapes.SHAPES:
        out.append(("attribute", f"shape {s}", [i for i, t in enumerate(tags) if any(p[1] == s for p in t["pairs"])]))
    out.append(("attribute", "size stated", [i for i, t in enumerate(tags) if t["size_given"]]))
    return [g for g in out if g[2]]


def _rate(scores: list[dict], key: str) -> float:
    return float(np.mean([s[key] for s in scores])) if scores else float("nan")


def breakdown(prompts: Sequence[str], scores: list[list[dict]]) -> list[dict[str, Any]]:
    """Accuracy per group: all samples (no reranking) and the top-ranked sample (reranked)."""
    rows = []
    for kind, name, idx in groups(prompts):
        every = [s for i in idx for s in scores[i]]
        top = [scores[i][0] for i in idx]
        two = [s for i in idx for s in scores[i] if prompt_tags(prompts[i])["objects"] == 2]
        rows.append({"group": kind, "name": name, "prompts": len(idx), "samples": len(every),
                     "color_shape": _rate(every, "color_shape"), "full": _rate(every, "full"),
                     "relation_ok": _rate(two, "relation_ok") if two else None,
                     "color_shape_reranked": _rate(top, "color_shape"), "full_reranked": _rate(top, "full")})
    return rows


def sweep_subset(prompts: Sequence[str], n: int) -> list[int]:
    """``n`` prompt indices spread evenly over the singles and the two-object prompts (in their
    share), so a small sweep still covers every shape, colour and relation."""
    singles = [i for i, p in enumerate(prompts) if prompt_tags(p)["objects"] == 1]
    pairs = [i for i, p in enumerate(prompts) if prompt_tags(p)["objects"] == 2]
    n = min(n, len(prompts))
    n_single = min(len(singles), round(n * len(singles) / len(prompts)))
    n_pair = min(len(pairs), n - n_single)

    def spread(items: list[int], k: int) -> list[int]:
        return [items[int(round(x))] for x in np.linspace(0, len(items) - 1, k)] if k > 0 else []

    return sorted(spread(singles, n_single) + spread(pairs, n_pair))


def real_renders(n: int, size: int, seed: int, tag: str) -> tuple[list, list[str]]:
    """``n`` fresh validation scenes (a stream of their own, never the training shards' seed)."""
    rng = random.Random(f"argen-eval:shapes:{tag}:{seed}")
    scenes = [shapes.sample_scene(rng, "val") for _ in range(n)]
    return [shapes.render(s, size) for s in scenes], [shapes.caption(s) for s in scenes]


def _score_all(prompts: Sequence[str], outputs: list[list], progress: bool, desc: str) -> list[list[dict]]:
    return [[shapes.score(img, p) for img in per]
            for p, per in tqdm(list(zip(prompts, outputs)), desc=desc, unit="prompt", disable=not progress)]


def evaluate_shapes(export: str | Path, out: str | Path, num_samples: int = 4,
                    cfg_scales: Sequence[float] = DEFAULT_SCALES, sweep_prompts: int = 16, sweep_samples: int = 2,
                    fid_real: int = 256, seed: int = 0, batch_size: int = 64, device: str = "cpu",
                    features: str = "auto", inception_weights: str | None = None, cell: int = 96,
                    wandb: bool = False, progress: bool = True, speculative: bool | int = False,
                    cache: str | Path | None | bool = None) -> dict[str, Any]:
    """Run the shapes evaluation of a generator export and write its report to ``out``.

    ``speculative``: sample by speculative decoding (see :meth:`argen.Generator.generate`).
    ``cache``: the folder keeping the real renders' features between runs (:mod:`argen.eval.cache`;
    ``False``: none)."""

    check_generator(export, "image_tokenizer", "shapes")
    for name, value, low in (("num_samples", num_samples, 1), ("sweep_samples", sweep_samples, 1),
                             ("sweep_prompts", sweep_prompts, 0), ("fid_real", fid_real, 2)):
        if value < low:
            raise ValueError(f"{name} must be ≥ {low}, got {value}")
    fid = FID(features, inception_weights, device)  # fails early if Inception is asked for and missing
    store = Cache(cache)
    gen = Generator.from_pretrained(export, device=device)
    prompts = shapes.prompt_suite()
    report = Report(out, f"argen eval shapes: {export}", {
        "subcommand": "shapes", "export": str(export), "prompts": len(prompts), "num_samples": num_samples,
        "rerank": "model (cond - uncond log-likelihood)", "cfg_scales": list(cfg_scales),
        "sweep_prompts": sweep_prompts, "sweep_samples": sweep_samples, "fid_real": fid_real, "seed": seed,
        "sampling": gen.sampling.to_dict(), "fid_features": fid.name, "speculative": speculative}, wandb)

    # -- main run: the suite, num_samples each, reranked ----------------------------------------
    outputs = gen.generate(prompts, num_samples=num_samples, seed=seed, rerank=True, batch_size=batch_size,
                           progress=progress, speculative=speculative)
    scores = _score_all(prompts, outputs, progress, "scoring")
    rows = breakdown(prompts, scores)
    overall = rows[0]
    by_name = {r["name"]: r for r in rows}
    size = outputs[0][0].size[0]

    # -- references: the scorer on real renders; FID of real against real -----------------------
    fakes = [img for per in outputs for img in per]
    real, _ = real_renders(fid_real, size, seed, "real")
    ref, ref_captions = real_renders(len(fakes), size, seed, "reference")
    ref_scores = [shapes.score(img, c) for img, c in zip(ref, ref_captions)]
    f_real = store.features(fid, real, "shapes-real", progress)
    fid_gen = fid_kid(f_real, fid.features(fakes, progress, "sample features"), seed=seed)
    fid_ref = fid_kid(f_real, store.features(fid, ref, "shapes-reference", progress), seed=seed)

    # -- CFG sweep on a stratified subset --------------------------------------------------------
    subset = sweep_subset(prompts, sweep_prompts)
    sweep_rows, sweep_images = [], []
    for scale in cfg_scales if subset else ():
        sub = [prompts[i] for i in subset]
        outs = gen.generate(sub, num_samples=sweep_samples, cfg_scale=scale, seed=seed, batch_size=batch_size,
                            progress=progress, speculative=speculative)
        sc = [s for per in _score_all(sub, outs, False, "") for s in per]
        sweep_rows.append({"cfg_scale": scale, "samples": len(sc), "color_shape": _rate(sc, "color_shape"),
                           "full": _rate(sc, "full"), "count_ok": _rate(sc, "count_ok")})
        sweep_images.append([per[0] for per in outs])

    # -- metrics ---------------------------------------------------------------------------------
    held = by_name.get("held-out pair in prompt", {})
    report.metrics = {
        "accuracy": {"color_shape": overall["color_shape"], "full": overall["full"],
                     "color_shape_reranked": overall["color_shape_reranked"],
                     "full_reranked": overall["full_reranked"],
                     "held_out_full": held.get("full"), "held_out_full_reranked": held.get("full_reranked")},
        "breakdown": {r["name"]: {k: v for k, v in r.items() if k not in ("group", "name")} for r in rows},
        "cfg_sweep": {str(r["cfg_scale"]): {k: v for k, v in r.items() if k != "cfg_scale"} for r in sweep_rows},
        "fid": {**fid_gen, "features": fid.name},
        "reference": {"fid_real_vs_real": fid_ref["fid"], "kid_real_vs_real": fid_ref["kid_mean"],
                      "scorer_full_on_real": _rate(ref_scores, "full"),
                      "scorer_color_shape_on_real": _rate(ref_scores, "color_shape")},
    }

    # -- report ----------------------------------------------------------------------------------
    pct = dict(percent=True)
    report.summary("accuracy (full), one sample", overall["full"], "count, colour, shape, size and relation", **pct)
    report.summary(f"accuracy (full), best of {num_samples} reranked", overall["full_reranked"], "", **pct)
    report.summary("accuracy (colour+shape), one sample", overall["color_shape"], "", **pct)
    if held:
        report.summary("held-out pairs: accuracy (full)", held["full"],
                       f"{held['prompts']} prompts with a pair never seen in training", **pct)
    report.summary("FID", fid_gen["fid"], f"{fid.name}; real vs real: {fid_ref['fid']:.4g}")
    report.summary("KID", fid_gen["kid_mean"], f"real vs real: {fid_ref['kid_mean']:.3g}")
    report.summary("scorer on real renders (full)", report.metrics["reference"]["scorer_full_on_real"],
                   "ceiling: what a perfect model would score", **pct)

    report.section("Compositional accuracy", f"""
{len(prompts)} prompts (`argen.data.shapes.prompt_suite`), {num_samples} samples each at the export's
default guidance (cfg {gen.sampling.cfg_scale}), seed {seed}. Columns without a suffix average over
**all** samples (one random sample's chance); `_reranked` columns take the sample the model ranks
first (conditional minus unconditional log-likelihood). `color_shape`: each named object present with
its colour and shape; `full`: also object count, stated sizes and relation; `relation_ok`: two-object
prompts whose relation holds.""")
    report.table("accuracy", rows, ["group", "name", "prompts", "samples", "color_shape", "full", "relation_ok",
                                    "color_shape_reranked", "full_reranked"],
                 percent=("color_shape", "full", "relation_ok", "color_shape_reranked", "full_reranked"))
    top = [per[0] for per in outputs]
    report.grid("samples-reranked", top, [_mark(s[0]) + p for p, s in zip(prompts, scores)],
                f"top-ranked sample of every prompt ({num_samples} drawn); 'ok' = full score", ncol=8, cell=cell,
                caption_lines=3)
    held_all = [i for i, p in enumerate(prompts) if prompt_tags(p)["held_out"]]
    held_idx = held_all[:16]
    if held_idx:
        shown = f"{len(held_idx)} of {len(held_all)} prompts" if len(held_idx) < len(held_all) else "every prompt"
        report.grid("samples-held-out", [img for i in held_idx for img in outputs[i]],
                    [_mark(s) + prompts[i] for i in held_idx for s in scores[i]],
                    f"held-out pairs ({shown}): all {num_samples} samples per prompt, best first",
                    ncol=num_samples * max(1, 8 // num_samples), cell=cell, caption_lines=3)

    if sweep_rows:
        report.section("Classifier-free guidance sweep", f"""
{len(subset)} prompts spread over singles and pairs, {sweep_samples} samples each per scale (seed {seed},
no reranking). Scale 1 is the plain conditional model; higher scales follow the text harder.""")
        report.table("cfg_sweep", sweep_rows, percent=("color_shape", "full", "count_ok"))
        show = subset[:8]
        images = [sweep_images[k][j] for j in range(len(show)) for k in range(len(sweep_rows))]
        captions = [f"cfg {r['cfg_scale']:g}: {prompts[i]}" for i in show for r in sweep_rows]
        report.grid("cfg-sweep", images, captions, "one row per prompt, guidance scale rising to the right",
                    ncol=len(sweep_rows), cell=max(cell, 128), caption_lines=3)

    report.section("FID / KID", f"""
Generated: all {len(fakes)} samples of the main run. Real: {fid_real} fresh renders of validation
scenes (half hold a held-out pair), {size} px. Features: **{fid.name}**
{_feature_note(fid.name)} The reference row compares a second set of {len(ref)} real renders with
the same real set: the value a perfect generator would get at this sample count.""")
    report.table("fid", [{"set": "generated samples", "n": fid_gen["n_fake"], "FID": fid_gen["fid"],
                          "KID": fid_gen["kid_mean"], "KID std": fid_gen["kid_std"]},
                         {"set": "real renders (reference)", "n": fid_ref["n_fake"], "FID": fid_ref["fid"],
                          "KID": fid_ref["kid_mean"], "KID std": fid_ref["kid_std"]}])
    report.grid("real-renders", ref[:16], ref_captions[:16], "real renders of validation scenes, for comparison",
                ncol=8, cell=cell, caption_lines=3)
    report.write()
    return report.metrics


def _mark(score: dict) -> str:
    return "ok: " if score["full"] else "no: "


def _feature_note(name: str) -> str:
    if name.startswith("inception"):
        return "(FID's Inception v3, the network published FIDs use)."
    return ("(a fixed random conv net; Inception weights were not available. Compare these values "
            "only with other runs that name the same extractor, never with published Inception FIDs).")
