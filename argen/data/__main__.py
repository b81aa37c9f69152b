"""``python -m argen.data``: prepare built-in shards, train a text tokenizer, describe shards.

    python -m argen.data prepare shapes --out data/shapes32 --train 20000 --val 512 --size 32
    python -m argen.data prepare icons --sources mdi,tabler,lucide --out data/icons   (default: every installed set)
    python -m argen.data prepare icons --common 6 --out data/icons-common6     (the IconShop CPU demo's corpus)
    python -m argen.data prepare emoji --from emoji-datasource-google-16.0.0.tgz … --out data/emoji64
    python -m argen.data tokenizer --shards 'data/shapes32/train-*.tar' --vocab-size 128 --out tok.json
    python -m argen.data stats 'data/shapes32/val-*.tar' --json
    python -m argen.data encode …   (pre-compute image tokens; see its --help)
"""

from __future__ import annotations

from argen.omp import prefer_passive_wait

prefer_passive_wait()  # before anything loads torch (see argen/omp.py)

import argparse
import json
import sys


# Each subcommand imports what it runs inside its function, so `--help` and argument errors answer
# before torch and webdataset load, and `stats` never loads the image tokenizer's models.
def _prepare(args: argparse.Namespace) -> None:
    if args.dataset == "emoji":
        _prepare_emoji(args)
        return
    from argen.data.recipes import prepare_recipe  # function-level: see above

    recipe = {"dataset": args.dataset, "out": args.out, "per_shard": args.per_shard}
    if args.dataset == "shapes":
        recipe.update(train=args.train, val=args.val, size=args.size or 32, seed=args.seed)
    else:
        recipe.update(format=args.format, size=args.size or 256, sources=args.sources, common=args.common)
    prepare_recipe(recipe, force=args.force)
    print(f"prepared {args.dataset} shards in {args.out}")


def _prepare_emoji(args: argparse.Namespace) -> None:
    # imported here: `python -m argen.data --help` and the other subcommands need neither
    from argen.data import emoji
    from argen.data.recipes import tokenizer_for

    if not args.packs:
        raise ValueError("prepare emoji needs --from PACK [PACK ...] (npm pack tarballs or folders; see docs/data.md)")
    counts = emoji.prepare(args.packs, args.out, size=args.size or 64, val_fraction=args.val_fraction,
                           heldout_pairs=args.heldout_pairs, seed=args.seed, per_shard=args.per_shard, progress=True)
    if args.vocab_size:  # the text tokenizer on the training captions, as the built-in recipes do
        tokenizer_for(f"{args.out}/train-*.tar", args.vocab_size, f"{args.out}/tokenizer.json")
    for split, c in counts["splits"].items():
        print(f"{split:>8}: {c['images']} images, {c['concepts']} concepts, per vendor {c['per_vendor']}")
    print(f"prepared emoji shards in {args.out} (held-out pairs: {args.out}/heldout.tsv)")


def _tokenizer(args: argparse.Namespace) -> None:
    from argen.data.recipes import tokenizer_for  # function-level: see above _prepare

    tok = tokenizer_for(args.shards, args.vocab_size, args.out)
    print(f"wrote {args.out} ({tok.vocab_size} tokens)")


def _stats(args: argparse.Namespace) -> None:
    from argen.data.shards import shard_stats  # function-level: see above _prepare

    tok = None
    if args.tokenizer:
        from argen.text import TextTokenizer  # function-level: see above _prepare

        tok = TextTokenizer.from_file(args.tokenizer)
    s = shard_stats(args.specs, tokenizer=tok, progress=not args.quiet)
    for k, v in s.items():
        print(f"{k:>16}: {v}")
    if args.json:
        print(json.dumps(s))


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m argen.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="write a built-in dataset as DIR/train-NNNNNN.tar and DIR/val-NNNNNN.tar")
    p.add_argument("dataset", choices=["shapes", "icons", "emoji"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=20000, help="shapes: training samples")
    p.add_argument("--val", type=int, default=512, help="shapes: validation samples")
    p.add_argument("--size", type=int, default=None, help="image side in px (shapes: 32, icons png: 256)")
    p.add_argument("--seed", type=int, default=0, help="shapes: random seed")
    p.add_argument("--format", choices=["svg", "png"], default="svg", help="icons: SVG text or rasterized PNG")
    p.add_argument("--sources", default="all",
                   help="icons: comma-separated sets (mdi,tabler,remix,fontawesome,bootstrap,lucide,ionicons,"
                        "heroicons); default: every installed one")
    p.add_argument("--common", type=int, default=0,
                   help="icons: keep only concepts drawn by at least this many sets and hold out some "
                        "(concept, set) pairs as val (the demo corpus); 0: the whole corpus, split by concept")
    p.add_argument("--per-shard", type=int, default=None, help="samples per shard (default: ≤1000, ≥16 shards)")
    p.add_argument("--force", action="store_true", help="rewrite even if DIR holds a prepared recipe")
    p.add_argument("--from", dest="packs", nargs="+", default=None, metavar="PACK",
                   help="emoji: npm pack tarballs or unpacked folders (emoji-datasource-google/-twitter, "
                        "@lobehub/fluent-emoji-3d)")
    p.add_argument("--val-fraction", type=float, default=0.05, help="emoji: share of concepts held out entirely")
    p.add_argument("--heldout-pairs", type=int, default=150, help="emoji: held-out (concept, vendor) pairs")
    p.add_argument("--vocab-size", type=int, default=512, help="emoji: text tokenizer size (0: none)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("tokenizer", help="train a Unigram text tokenizer on shard captions")
    p.add_argument("--shards", nargs="+", required=True, help="shard specs (paths, globs, braces, URLs)")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True, help="tokenizer.json to write")
    p.set_defaults(func=_tokenizer)

    p = sub.add_parser("stats", help="count samples and skips, summarise captions and images")
    p.add_argument("specs", nargs="+", help="shard specs (paths, globs, braces, URLs)")
    p.add_argument("--json", action="store_true", help="end with one JSON line")
    p.add_argument("--tokenizer", help="tokenizer.json, to summarise caption lengths in tokens")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_stats)

    p = sub.add_parser("encode", help="pre-compute image tokens (KEY.tok.npy) with a stage-1 export")
    if argv[:1] == ["encode"]:  # import the encoder (and torch models) only when asked for
        try:
            from argen.data import encode
        except ImportError as e:
            parser.error(f"encode is unavailable: {e}")
        encode.add_arguments(p)
        p.set_defaults(func=encode.main)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, IsADirectoryError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
