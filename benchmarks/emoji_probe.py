"""How well can the emoji evaluation's probe tell vendors and categories apart on real images?

    python benchmarks/emoji_probe.py [--shards 'data/emoji64/train-*.tar'] [--configs 6x32 12x32 12x48]

Trains the CNN probe of ``argen.eval emoji`` on the real training images for each ``EPOCHSxWIDTH``
configuration and scores it on the real images of the held-out (concept, vendor) pairs
(``heldout-*.tar`` beside the training shards, every skin tone). That accuracy is the ceiling a
perfect generator reaches; the issue asks for ≥ 95% on the vendor. Also prints the probe's most
common mistakes as (true vendor, predicted vendor, category).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from argen.data.emoji import VENDORS
from argen.eval import emoji


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", default="data/emoji64/train-*.tar", help="real training shards")
    p.add_argument("--configs", nargs="+", default=["6x32", "12x32", "12x48"], help="EPOCHSxWIDTH to compare")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    train = emoji.read_real(args.shards, 64)
    held = emoji.read_real(str(Path(args.shards).parent / "heldout-*.tar"), 64)
    vendors, categories = list(VENDORS), sorted({r["category"] for r in train})
    images = np.stack([r["image"] for r in held])
    rows = []
    for config in args.configs:
        epochs, width = (int(x) for x in config.split("x"))
        start = time.process_time()
        probe = emoji.Probe(vendors, categories, "cnn", seed=0, epochs=epochs, width=width).fit(train)
        cpu = time.process_time() - start
        pred_v, pred_c = probe.predict(images)
        true_v, true_c = probe._labels(held)
        wrong = Counter((r["vendor"], vendors[int(v)], r["category"])
                        for r, v, t in zip(held, pred_v, true_v) if v != t)
        row = {"epochs": epochs, "width": width, "vendor": float((pred_v == true_v).float().mean()),
               "category": float((pred_c == true_c).float().mean()), "cpu_s": cpu}
        rows.append(row)
        print(f"{epochs:>3} epochs, {width:>3} channels: vendor {row['vendor']:.1%}, category {row['category']:.1%} "
              f"on {len(held)} held-out images ({cpu:.0f} CPU-s); mistakes {wrong.most_common(4)}", flush=True)
    return rows


if __name__ == "__main__":
    main()
