"""Prompt suites as PartiPrompts-style TSV files, and ``argen.eval prompts``: grids per category.

A suite is a tab-separated file whose first line names its columns; ``prompt`` is required,
``category`` and ``challenge`` are used when present (PartiPrompts' own ``PartiPrompts.tsv``, with
``Prompt Category Challenge Note``, reads as it is), and any other column (``note``, ``slug`` …)
is kept. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argen.data import shapes
from argen.eval.report import Report
from argen.export import read_config
from argen.generator import Generator
from argen.sampling_config import UNSET
from argen.slug import slug
from argen.svg.metrics import validity


@dataclass
class PromptRow:
    prompt: str
    category: str = "all"
    challenge: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    line: int = 0


def read_prompts(path: str | Path) -> list[PromptRow]:
    """Read a prompt suite; any problem is a ``ValueError`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"prompt file {path} is not UTF-8 text ({e})") from None
    lines = [(i, line.rstrip("\r\n")) for i, line in enumerate(text.splitlines(), 1)]
    lines = [(i, line) for i, line in lines if line.strip() and not line.lstrip().startswith("#")]
    expected = "a header line 'prompt<TAB>category<TAB>challenge', then one prompt per line"
    if not lines:
        raise ValueError(f"prompt file {path} is empty: expected {expected}")
    header_line, header = lines[0]
    names = [h.strip().lower() for h in header.split("\t")]
    if "prompt" not in names:
        raise ValueError(f"{path}:{header_line}: the first line must be a tab-separated header with a "
                         f"'prompt' column, got {header!r} (expected {expected})")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}:{header_line}: repeated column names in header {names}")
    rows = []
    for lineno, line in lines[1:]:
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) > len(names):
            raise ValueError(f"{path}:{lineno}: {len(cells)} tab-separated fields but the header names "
                             f"{len(names)} ({', '.join(names)})")
        record = dict(zip(names, cells + [""] * (len(names) - len(cells))))
        prompt = record.pop("prompt")
        if not prompt:
            raise ValueError(f"{path}:{lineno}: empty prompt")
        rows.append(PromptRow(prompt, record.pop("category", "") or "all", record.pop("challenge", ""),
                              record, lineno))
    if not rows:
        raise ValueError(f"prompt file {path} has a header but no prompts: expected {expected}")
    return rows


def write_prompts(path: str | Path, rows: list[PromptRow], comment: str = "") -> Path:
    """Write rows as a suite ``read_prompts`` reads back (extra columns from the first row)."""
    path = Path(path)
    extra = list(rows[0].extra) if rows else []
    for r in rows:
        for cell in (r.prompt, r.category, r.challenge, *r.extra.values()):
            if "\t" in cell or "\n" in cell:
                raise ValueError(f"prompt suite cells cannot hold tabs or newlines: {cell!r}")
    lines = [f"# {c}" for c in comment.splitlines()] + ["\t".join(["prompt", "category", "challenge", *extra])]
    lines += ["\t".join([r.prompt, r.category, r.challenge, *(r.extra.get(k, "") for k in extra)]) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def by_category(rows: list[PromptRow]) -> dict[str, list[PromptRow]]:
    groups: dict[str, list[PromptRow]] = defaultdict(list)
    for r in rows:
        groups[r.category].append(r)
    return dict(groups)


def evaluate_prompts(export: str | Path, prompts: str | Path, out: str | Path, num_samples: int = 4,
                     seed: int = 0, cfg_scale: float = UNSET, temperature: float = UNSET,
                     top_k: int | None = UNSET, top_p: float | None = UNSET, rerank: bool = False,
                     batch_size: int = 64, device: str = "cpu", cell: int = 96, wandb: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Sample every prompt of a suite; one grid per category (rows: prompts, columns: samples).

    Image models whose prompts are all shapes captions also get compositional accuracy per
    category; SVG models get validity per category and their ``.svg`` files under ``OUT/svg``.
    Sampling settings left out are the export's (see :class:`argen.sampling_config.SamplingConfig`).
    """

    rows = read_prompts(prompts)
    read_config(export, "generator")
    if num_samples < 1:
        raise ValueError(f"num_samples must be ≥ 1, got {num_samples}")
    gen = Generator.from_pretrained(export, device=device)
    kind = gen.target.kind
    sampling = gen.sampling.override(cfg_scale=cfg_scale, temperature=temperature, top_k=top_k, top_p=top_p)
    report = Report(out, f"argen eval prompts: {Path(prompts).name} on {export}", {
        "subcommand": "prompts", "export": str(export), "prompts": str(prompts), "target": kind,
        "num_prompts": len(rows), "num_samples": num_samples, "seed": seed, "rerank": rerank,
        "sampling": sampling.to_dict()}, wandb)
    outputs = gen.generate([r.prompt for r in rows], num_samples=num_samples, seed=seed, rerank=rerank,
                           batch_size=batch_size, progress=progress, **sampling.to_dict())
    groups = by_category(rows)
    index = {id(r): i for i, r in enumerate(rows)}
    shapes_scores = _shapes_scores(rows, outputs) if kind == "image_tokenizer" else None
    per_category: dict[str, Any] = {}
    overview = []
    for name, members in groups.items():
        outs = [outputs[index[id(r)]] for r in members]
        entry: dict[str, Any] = {"prompts": len(members), "samples": len(members) * num_samples}
        if kind == "svg_tokenizer":
            entry["validity"] = validity([o for per in outs for o in per])
        if shapes_scores is not None:
            scores = [s for r in members for s in shapes_scores[index[id(r)]]]
            entry["color_shape"] = sum(s["color_shape"] for s in scores) / len(scores)
            entry["full"] = sum(s["full"] for s in scores) / len(scores)
        per_category[name] = entry
        overview.append({"category": name, **entry})
    report.metrics = {"categories": per_category, "num_prompts": len(rows), "num_samples": num_samples}
    percent = ("validity", "color_shape", "full")
    note = ""
    if shapes_scores is not None:
        note = (" Every prompt is a shapes caption, so samples are also scored by `argen.data.shapes.score`: "
                "`color_shape` = each named object with its colour and shape; `full` = also count, sizes and "
                "relation.")
    elif kind == "svg_tokenizer":
        note = " `validity`: the SVG parses strictly and renders."
    report.section("Categories", f"{len(rows)} prompts from `{prompts}`, {num_samples} samples each "
                   f"(seed {seed}{', reranked' if rerank else ''}).{note}")
    report.table("categories", overview, percent=percent)
    for name, members in groups.items():
        report.section(f"Category: {name}")
        table = [{"prompt": r.prompt, "challenge": r.challenge, **r.extra} for r in members]
        if shapes_scores is not None:
            for t, r in zip(table, members):
                s = shapes_scores[index[id(r)]]
                t["full (of samples)"] = f"{sum(x['full'] for x in s)}/{len(s)}"
        report.table(f"prompts-{slug(name)}", table)
        images = [o for r in members for o in outputs[index[id(r)]]]
        captions = [r.prompt if j == 0 else "" for r in members for j in range(num_samples)]
        report.grid(f"category-{name}", images, captions, f"{name}: one row per prompt, {num_samples} samples",
                    ncol=num_samples, cell=cell)
    if kind == "svg_tokenizer":
        folder = report.out / "svg"
        folder.mkdir(exist_ok=True)
        for i, (r, per) in enumerate(zip(rows, outputs)):
            for j, svg in enumerate(per):
                (folder / f"{i:04d}-{j}-{slug(r.prompt, 40)}.svg").write_text(svg)
        report.text(f"SVG files: `{folder.name}/`.")
    report.write()
    return report.metrics


def _shapes_scores(rows: list[PromptRow], outputs: list[list]) -> list[list[dict]] | None:
    """shapes.score of every sample when every prompt is a shapes caption, else None."""
    try:
        for r in rows:
            shapes.parse_caption(r.prompt)
    except ValueError:
        return None
    return [[shapes.score(img, r.prompt) for img in per] for r, per in zip(rows, outputs)]
