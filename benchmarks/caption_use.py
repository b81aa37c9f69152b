"""Does a trained decoder read its caption? Loss per target token with the own, shuffled and empty caption.

    python benchmarks/caption_use.py --shards 'data/icons-common6/train-*.tar' EXPORT [EXPORT ...] \
        [--by-position] [--json]

For each export, the first ``--samples`` samples of the shards are scored by teacher forcing three
times: with their own captions, with the captions shuffled among them (the same words, the wrong
drawing), and with the empty caption (the unconditional model classifier-free guidance uses). The
gap between own and shuffled is what the text is worth to the decoder, in nats per target token; a
decoder that ignores the text scores all three alike. Shards with SVGs or with pre-encoded image
tokens (``.tok.npy``) both work; the export's target must match them. Learning speed of two recipes
is compared by giving both exports (e.g. ``train/iconshop-demo.yaml`` with and without
``feature_head``): BENCHMARKS.md, "What the decoder learns".
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from argen.data.shards import make_loader
from argen.generator import Generator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported rather than run as a script
from serve import cpu_model  # noqa: E402  (benchmarks/serve.py)


def first_samples(shards: str, n: int, svg: bool) -> dict:
    """The first ``n`` samples of the shards in order, as one collated batch (captions, and SVGs or the
    pre-encoded image tokens)."""
    loader = make_loader(shards, train=False, batch_size=n, image_size=None, load_image=False, load_svg=svg)
    return next(iter(loader))


POSITION_EDGES = (0, 1, 2, 3, 4, 6, 10, 20, 40, 80, 160, 320, 640, 1280, 1 << 20)


@torch.no_grad()
def caption_losses(gen: Generator, batch: dict, max_text_len: int, seed: int = 0) -> dict:
    """Mean cross-entropy (nats per target token, padding excluded) under own, shuffled and empty captions,
    and own against shuffled per range of target positions (``by_position``)."""
    targets = gen.target.encode_batch(batch)
    pad = gen.target.pad_id
    valid = targets != pad if pad is not None else torch.ones_like(targets, dtype=torch.bool)
    keep = valid.any(1)  # an SVG the tokenizer refused is an all-pad row
    targets, valid = targets[keep], valid[keep]
    captions = [c for c, k in zip(batch["caption"], keep.tolist()) if k]
    inputs = gen.net.shift_right(targets)
    positions = torch.arange(inputs.shape[1])
    features = gen.target.token_features(inputs, positions) if gen.net.config.target_feature_sizes else None

    def per_token(texts: list[str]) -> torch.Tensor:
        ids, mask = gen.text_tokenizer.encode(texts, max_text_len)
        logits = gen.net(ids, mask, inputs, features).float()
        return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")

    shuffled = captions[:]
    random.Random(seed).shuffle(shuffled)
    own, mixed, empty = per_token(captions), per_token(shuffled), per_token([""] * len(captions))
    by_position = []  # where in the sequence the text is worth something
    for lo, hi in zip(POSITION_EDGES, POSITION_EDGES[1:]):
        v = valid[:, lo:hi]
        if v.any():
            by_position.append({"positions": [lo, hi], "tokens": int(v.sum()), "own": float(own[:, lo:hi][v].mean()),
                                "shuffled": float(mixed[:, lo:hi][v].mean())})
    return {"own": float(own[valid].mean()), "shuffled": float(mixed[valid].mean()),
            "empty": float(empty[valid].mean()), "samples": len(captions), "by_position": by_position}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exports", nargs="+", help="stage-2 generator exports to compare")
    p.add_argument("--shards", required=True, help="shards to score (brace or glob pattern)")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the caption shuffle")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--by-position", action="store_true",
                   help="also own vs shuffled per range of target positions (the first tokens of an SVG are "
                        "where its text matters most)")
    p.add_argument("--json", action="store_true", help="last line: the losses as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch, results = None, {}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print(f"{'export':<48} {'own':>7} {'shuffled':>9} {'empty':>7} {'text worth':>11}   (nats per target token)")
    for export in args.exports:
        gen = Generator.from_pretrained(export)
        if batch is None:
            batch = first_samples(args.shards, args.samples, svg=gen.target.kind == "svg_tokenizer")
        r = caption_losses(gen, batch, gen.net.config.max_text_len, args.seed)
        results[export] = r
        print(f"{export:<48} {r['own']:7.3f} {r['shuffled']:9.3f} {r['empty']:7.3f} {r['shuffled'] - r['own']:11.3f}"
              f"   ({r['samples']} samples)")
        if args.by_position:
            for b in r["by_position"]:
                lo, hi = b["positions"]
                print(f"{'':>4}positions {lo:>4}-{hi - 1:<7} own {b['own']:7.3f}   shuffled {b['shuffled']:7.3f}   "
                      f"text worth {b['shuffled'] - b['own']:7.3f}")
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
