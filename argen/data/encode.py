"""``python -m argen.data encode``: pre-compute image tokens with a stage-1 export, once, for stage 2.

    python -m argen.data encode --tokenizer runs/tokenizer-demo/export \\
        --shards 'data/shapes32/train-*.tar' --out data/shapes32-tok

Every input shard gives an output shard of the same name holding ``KEY.tok.npy`` (the (h, w) code
grid), ``KEY.txt`` and ``KEY.json`` (copied), so stage 2 reads tokens instead of decoding and
encoding images every epoch (what dalle-mini does at scale). Samples are read with the data
module's own decoding (same resize and crop as training) and bad ones are skipped and counted.
Batches run on the GPU in bf16 when there is one.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm

from argen.data.shards import IMAGE_EXTS, BadSample, SampleDecoder, SkipCounter, expand_shards
from argen.vqgan import ImageTokenizer

log = logging.getLogger("argen.data.encode")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", required=True, help="image tokenizer export folder (argen.vqgan)")
    parser.add_argument("--shards", nargs="+", required=True, help="input shard specs (paths, globs, braces)")
    parser.add_argument("--out", required=True, help="output folder (one output shard per input shard)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per encoder batch")
    parser.add_argument("--num-workers", type=int, default=2, help="shard-reading worker processes")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--keep-image", action="store_true", help="copy the image member too")
    parser.add_argument("--max-bad-fraction", type=float, default=0.2,
                        help="stop when more than this share of a shard's samples is bad")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


class _ShardSamples(torch.utils.data.IterableDataset):
    """Decoded samples of whole shards, one shard per worker at a time, then an end-of-shard marker."""

    def __init__(self, urls: list[str], image_size: int, keep_image: bool, max_bad_fraction: float):
        super().__init__()
        self.urls, self.image_size = urls, image_size
        self.keep_image, self.max_bad_fraction = keep_image, max_bad_fraction

    def __iter__(self):
        decoder = SampleDecoder(self.image_size, load_image=True)
        for url in wds.split_by_worker(self.urls):
            counter = SkipCounter(self.max_bad_fraction, what=url)
            for raw in wds.tarfile_samples([{"url": url}], handler=counter.handler):
                try:
                    s = decoder(raw)
                    if "image" not in s:
                        raise BadSample("no_image", "no image member to encode")
                except BadSample as e:
                    counter.skip(e.reason, f"{raw.get('__key__')} in {url}: {e}")
                    continue
                counter.ok()
                item: dict[str, Any] = {"url": url, "key": s["key"], "image": s["image"], "txt": raw["txt"]}
                if "json" in raw:
                    item["json"] = raw["json"]
                if self.keep_image:
                    ext = next(e for e in IMAGE_EXTS if e in raw)
                    item[ext] = raw[ext]
                yield item
            yield {"url": url, "end": True, "skipped": counter.as_dict()}


def _npy(tokens: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, tokens, allow_pickle=False)
    return buf.getvalue()


def main(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    urls = expand_shards(args.shards)
    names = [Path(u).name for u in urls]
    if len(set(names)) != len(names):
        raise ValueError("input shards share file names, so their outputs would collide: "
                         f"{sorted(n for n in set(names) if names.count(n) > 1)[:4]}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = ImageTokenizer.from_pretrained(args.tokenizer, device=device)
    h, w = tokenizer.grid_size
    dtype = np.uint16 if tokenizer.codebook_size <= 2**16 else np.int32
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = _ShardSamples(urls, tokenizer.image_size, args.keep_image, args.max_bad_fraction)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=min(args.num_workers, len(urls)))
    writers: dict[str, wds.TarWriter] = {}
    pending: list[dict] = []
    totals: dict[str, Any] = {"samples": 0, "skipped": 0, "skipped_reasons": {}, "shards": 0}
    bar = tqdm(unit=" img", desc="encode", disable=args.quiet)

    def flush() -> None:
        if not pending:
            return
        images = torch.from_numpy(np.stack([p["image"] for p in pending])).permute(0, 3, 1, 2)
        images = images.to(device, non_blocking=True).float().div_(255.0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            ids = tokenizer.encode(images)
        ids = ids.view(-1, h, w).cpu().numpy().astype(dtype)
        for p, tok in zip(pending, ids):
            url = p["url"]
            if url not in writers:
                writers[url] = wds.TarWriter(str(out / Path(url).name))
            sample = {"__key__": p["key"], "tok.npy": _npy(tok), "txt": p["txt"]}
            sample.update({k: v for k, v in p.items() if k not in ("url", "key", "image", "txt")})
            writers[url].write(sample)
        totals["samples"] += len(pending)
        bar.update(len(pending))
        pending.clear()

    for item in loader:
        if item.get("end"):
            flush()
            if item["url"] in writers:
                writers.pop(item["url"]).close()
            totals["shards"] += 1
            totals["skipped"] += item["skipped"]["skipped"]
            for reason, n in item["skipped"]["skipped_reasons"].items():
                totals["skipped_reasons"][reason] = totals["skipped_reasons"].get(reason, 0) + n
            continue
        pending.append(item)
        if len(pending) == args.batch_size:
            flush()
    flush()
    for writer in writers.values():
        writer.close()
    bar.close()
    summary = {"tokenizer": str(args.tokenizer), "grid": [h, w], "codebook_size": tokenizer.codebook_size,
               **totals}
    (out / "encode.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"encoded {totals['samples']} images from {totals['shards']} shards into {out} "
          f"({totals['skipped']} skipped)")
