"""``python -m argen.sample EXPORT_DIR --prompt "a red circle" --num-samples 4 --out grid.png``

Image models write one captioned grid PNG. SVG models write a folder of ``.svg`` files plus a
``contact_sheet.png`` (``--out`` names the folder; a ``.png`` suffix is dropped).
"""

from __future__ import annotations

from argen.omp import prefer_passive_wait

prefer_passive_wait()  # before anything loads torch (see argen/omp.py)

import argparse
import sys
from pathlib import Path

from argen.sampling_config import add_sampling_args
from argen.slug import slug


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m argen.sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", help="export bundle folder (e.g. runs/parti-demo/export)")
    p.add_argument("--prompt", action="append", default=[], help="a prompt; repeat for several")
    p.add_argument("--prompts-file", help="a text file with one prompt per line")
    p.add_argument("--num-samples", type=int, default=4)
    p.add_argument("--out", default="samples.png", help="grid PNG (image models) or folder (SVG models)")
    add_sampling_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rerank", action="store_true", help="order samples by cond - uncond likelihood")
    p.add_argument("--no-cache", action="store_true", help="recompute every step (slow; for checking)")
    p.add_argument("--device", default="cpu", help="e.g. cuda, cuda:1")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weights and KV cache (bfloat16 on GPU halves the bytes each step reads)")
    p.add_argument("--compile", action="store_true",
                   help="compile the decode step (torch.compile, CUDA graphs on GPU; the first batch compiles)")
    p.add_argument("--speculative", nargs="?", const=True, default=False, type=int, metavar="WINDOW",
                   help="speculative Jacobi decoding: fewer decoder passes, same distribution (optional: "
                        "drafts per pass, default the target's: 10 for images, 4 for SVG; see docs/sampling.md)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="rows sampled together, across prompts (prompts x samples are split into batches)")
    p.add_argument("--cell", type=int, default=128, help="grid cell size in pixels")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += [line.strip() for line in Path(args.prompts_file).read_text().splitlines() if line.strip()]
    if not prompts:
        sys.exit("error: give at least one --prompt or a --prompts-file")

    # function-level: `--help` and argument errors answer before torch and the models load
    import torch

    from argen.generator import Generator
    from argen.grid import image_grid
    from argen.transformer.speculative import SpeculativeStats

    stats = SpeculativeStats() if args.speculative else None
    try:  # a missing or wrong bundle, or sampling settings out of range: one line, no traceback
        generator = Generator.from_pretrained(args.export, device=args.device, dtype=getattr(torch, args.dtype))
        outputs = generator.generate(
            prompts, num_samples=args.num_samples, cfg_scale=args.cfg_scale, temperature=args.temperature,
            top_k=args.top_k, top_p=args.top_p, seed=args.seed, rerank=args.rerank, use_cache=not args.no_cache,
            batch_size=args.batch_size, compile=args.compile, progress=True,
            speculative=args.speculative, stats=stats)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    if stats is not None:
        print(f"speculative decoding: {sum(stats.tokens)} tokens in {stats.passes} decoder passes "
              f"({stats.mean_accepted:.2f} tokens per pass per row; sequential decoding takes one per token)")
    flat = [o for per_prompt in outputs for o in per_prompt]
    captions = [p for p in prompts for _ in range(args.num_samples)]
    grid = image_grid(flat, captions, ncol=max(args.num_samples, min(8, len(flat))), cell=args.cell)

    out = Path(args.out)
    if isinstance(flat[0], str):  # SVG model: the files themselves, plus a contact sheet
        folder = out.with_suffix("") if out.suffix == ".png" else out
        folder.mkdir(parents=True, exist_ok=True)
        for i, (svg, caption) in enumerate(zip(flat, captions)):
            (folder / f"{i:04d}_{slug(caption, 40)}.svg").write_text(svg)
        grid.save(folder / "contact_sheet.png")
        print(f"wrote {len(flat)} SVG files and {folder / 'contact_sheet.png'}")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        grid.save(out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
