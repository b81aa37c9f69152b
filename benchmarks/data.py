"""Loader throughput: read + decode + resize + tokenize, samples/s on one core (one worker).

    python benchmarks/data.py [--samples 1500] [--repeats 3] [--scorer 1000]

Writes img2dataset-like shards (JPEG q95, smooth photo-like content, shapes captions) to a temp
folder, then times, in this process (num_workers=0, so the figure is per worker = per core):

- ``argen``: :class:`argen.data.shards.ShardStream` + ``Collate``, the training/validation path;
- ``wds stock``: the usual webdataset recipe, ``.decode("pil").to_tuple(...)`` with
  ``ImageOps.fit`` and the same tokenizer per batch, as the peer;
- ``read only``: tar reading and grouping, nothing decoded (the ceiling).

Prints a table, then one JSON line. Medians over repeats. The goal is ≥ 1000 samples/s per core
at 64 px, so the loader is never the bottleneck.

``--scorer N`` also measures the shapes scorer on N scenes per setting: accuracy on the dataset's
own renders (crisp, and blurred + noisy like a VQGAN reconstruction) at 32 and 64 px, and on
shuffled caption/image pairs (how often it says yes where the caption does not fit the scene).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image, ImageOps

from argen.data import shapes
from argen.data.shards import Collate, SampleDecoder, ShardStream
from argen.text import TextTokenizer

BATCH = 64


def photo(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth colour field plus grain: compresses and decodes like a photo, not like flat art."""
    base = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    a = np.asarray(base, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3), dtype=np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def write(folder: Path, n: int, size: int, pax: bool) -> list[str]:
    """``pax=True``: webdataset's default float mtimes, as img2dataset writes (a PAX header per
    member); ``pax=False``: whole-second mtimes, as ``argen.data`` writes."""
    rng = np.random.default_rng(0)
    srng = random.Random(0)
    name = f"s{size}{'p' if pax else 'u'}"
    with wds.ShardWriter(str(folder / f"{name}-%04d.tar"), maxcount=max(1, n // 4), verbose=0,
                         mtime=None if pax else 1_704_067_200) as sink:
        for i in range(n):
            buf = io.BytesIO()
            photo(rng, size).save(buf, format="JPEG", quality=95)
            text = shapes.caption(shapes.sample_scene(srng, "train"))
            sink.write({"__key__": f"{i:09d}", "jpg": buf.getvalue(), "txt": text,
                        "json": {"caption": text, "width": size, "height": size}})
    return sorted(str(p) for p in folder.glob(f"{name}-*.tar"))


def run_argen(urls, size, tok) -> int:
    stream = ShardStream(urls, SampleDecoder(size), batch_size=BATCH, collate=Collate(tok, 128))
    return sum(len(b["key"]) for b in stream)


def run_stock(urls, size, tok) -> int:
    def fit(img):
        img = ImageOps.fit(img.convert("RGB"), (size, size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255

    ds = (wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil")
          .to_tuple("jpg", "txt").map_tuple(fit, lambda t: t).batched(BATCH, collation_fn=None))
    n = 0
    for rows in ds:
        images = torch.stack([r[0] for r in rows])
        tok.encode([r[1] for r in rows], 128)
        n += len(images)
    return n


def run_read(urls, size, tok) -> int:
    return sum(1 for _ in wds.tarfile_samples({"url": u} for u in urls))


def timed(fn, *args, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        n = fn(*args)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def scorer_accuracy(n: int) -> list[dict]:
    rng = random.Random(123)
    scenes = [shapes.sample_scene(rng, "val" if i % 2 else "train") for i in range(n)]
    perm = list(range(n))
    random.Random(7).shuffle(perm)
    rows = []
    for size in (32, 64):
        for degraded in (False, True):
            def image(i, size=size, degraded=degraded):
                img = shapes.render(scenes[i], size)
                return shapes.degrade(img, 0.8 * size / 32, 8, seed=i) if degraded else img

            own = [shapes.score(image(i), shapes.caption(scenes[i])) for i in range(n)]
            yes = no = 0
            for i in range(n):
                text = shapes.caption(scenes[perm[i]])
                if not shapes.judge(shapes.scene_objects(scenes[i]), text)["full"]:
                    no += 1
                    yes += shapes.score(image(i), text)["full"]
            rows.append({"px": size, "images": "blur 0.8px/32 + noise 8" if degraded else "crisp",
                         "own_color_shape": sum(r["color_shape"] for r in own) / n,
                         "own_full": sum(r["full"] for r in own) / n,
                         "shuffled_mismatched": no, "shuffled_said_yes": yes / max(no, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scorer", type=int, default=0, metavar="N", help="also check the shapes scorer on N scenes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(1)
    tok = TextTokenizer.train([shapes.caption(shapes.sample_scene(rng, "train")) for _ in range(2000)], 128)
    cases = [(64, 64, True), (256, 256, True), (64, 512, True), (64, 64, False), (256, 256, False)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for out_px, stored_px, pax in cases:
            urls = write(Path(tmp), args.samples, stored_px, pax)
            row = {"out_px": out_px, "stored_px": stored_px, "shards": "img2dataset (pax)" if pax else "argen"}
            for name, fn in (("argen", run_argen), ("wds_stock", run_stock), ("read_only", run_read)):
                row[name] = round(timed(fn, urls, out_px, tok, repeats=args.repeats), 1)
            row["ratio_vs_stock"] = round(row["argen"] / row["wds_stock"], 2)
            results.append(row)
    print(f"data loader, samples/s on one core (median of {args.repeats}), batch {BATCH}, "
          f"{args.samples} JPEG q95 samples; {platform.processor() or platform.machine()}")
    print(f"{'output':>7} {'stored':>7} {'shards':>18} {'argen':>7} {'wds stock':>10} {'ratio':>6} {'read only':>10}")
    for r in results:
        print(f"{r['out_px']:>5}px {r['stored_px']:>5}px {r['shards']:>18} {r['argen']:>7.0f} "
              f"{r['wds_stock']:>10.0f} {r['ratio_vs_stock']:>6.2f} {r['read_only']:>10.0f}")
    out = {"benchmark": "data_loader", "unit": "samples/s/core", "samples": args.samples,
           "repeats": args.repeats, "results": results}
    if args.scorer:
        out["scorer"] = scorer_accuracy(args.scorer)
        print(f"shapes scorer, {args.scorer} scenes per row (half train, half val)")
        print(f"{'px':>4} {'images':>24} {'own color_shape':>16} {'own full':>9} {'shuffled: yes on mismatch':>26}")
        for r in out["scorer"]:
            print(f"{r['px']:>4} {r['images']:>24} {r['own_color_shape']:>16.3f} {r['own_full']:>9.3f} "
                  f"{r['shuffled_said_yes']:>17.3f} of {r['shuffled_mismatched']}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
