"""Webdataset shards in the img2dataset layout: spec expansion, sample decoding, streams, writing.

A sample is one key with members ``KEY.jpg|png`` (image), ``KEY.svg`` (SVG text), ``KEY.txt``
(caption), ``KEY.json`` (metadata) and optionally ``KEY.tok.npy`` (pre-computed image tokens).

Training streams give every (rank, worker) its own slice of the shard list (``wds.split_by_node``
then ``wds.split_by_worker``) and cycle through that slice forever, reshuffled on each pass: the
ranks never read the same shard, nothing runs dry, and ``with_epoch`` gives every rank the same
number of steps. Validation streams read fixed shards in a fixed order, once.

A sample that cannot be used is skipped and counted by reason (and logged); when more than
``max_bad_fraction`` of what a stream has seen is bad, it stops with :class:`BadDataError`.
"""

from __future__ import annotations

import glob
import io
import logging
import math
import os
import random
import re
import tarfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm
from webdataset.gopen import gopen, gopen_schemes
from webdataset.tariterators import group_by_keys, tar_file_expander

from argen.images import open_image, prepare_image, to_tensor

log = logging.getLogger("argen.data")

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
MIN_SEEN = 100  # items a stream must have seen before max_bad_fraction is enforced
SHARD_MTIME = 1_704_067_200  # 2024-01-01, the member mtime of shards argen writes
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


# -- shard specs ----------------------------------------------------------------------------------
def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """Brace patterns, globs, lists, local paths and URLs -> a list of shard URLs.

    Local paths are checked here, so a missing shard is an error naming it before any worker
    starts. URLs (``pipe:``, ``http://``, ``s3://`` …) are passed to webdataset as they are.
    """
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    if not specs:
        raise ValueError("empty shard spec: give at least one shard path, pattern or URL")
    urls: list[str] = []
    missing: list[str] = []
    for s in specs:
        for item in wds.shardlists.expand_urls(os.fspath(s)):  # "::" lists, ${WDS_VAR}, braces
            if _URL.match(item) and not item.startswith("file:"):
                _check_scheme(item)
                urls.append(item)
                continue
            path = os.path.expanduser(re.sub(r"^file:(//)?", "", item))
            if glob.has_magic(path):
                found = sorted(glob.glob(path))
                if not found:
                    raise FileNotFoundError(f"shard pattern {path!r} matches no file")
                urls.extend(found)
            elif os.path.isdir(path):
                raise IsADirectoryError(f"shard spec {path!r} is a directory; give its files, "
                                        f"e.g. '{os.path.join(path, '*.tar')}'")
            elif not os.path.isfile(path):
                missing.append(path)
            else:
                urls.append(path)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"shard file{'s' if len(missing) > 1 else ''} {shown} "
                                f"{'do' if len(missing) > 1 else 'does'} not exist (spec {spec!r})")
    return urls


def _scheme(url: str) -> str | None:
    return url.split(":", 1)[0].lower() if _URL.match(url) else None


def _check_scheme(url: str) -> None:
    """A URL needs webdataset's opener for its scheme (pipe:, http(s):, gs: …) or an fsspec backend."""
    scheme = _scheme(url)
    if scheme in gopen_schemes:
        return
    try:  # function-level: fsspec is optional, needed only for URL schemes webdataset cannot open
        import fsspec

        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as e:
        raise ValueError(f"cannot open shard URL {url!r}: {e}. Install the fsspec backend for {scheme}:, "
                         f"or use a pipe: URL (e.g. 'pipe:aws s3 cp {url} -')") from e


def open_shard(url: str):
    """A readable byte stream for a shard: webdataset's ``gopen`` for local paths and the schemes
    it knows (``pipe:``, ``http(s):``, ``gs:`` …), fsspec for the rest (``s3://``, ``memory://`` …)."""
    scheme = _scheme(url)
    if scheme is None or scheme == "file" or scheme in gopen_schemes:
        return gopen(re.sub(r"^file:(//)?", "", url))
    import fsspec  # function-level: optional (see _check_scheme, which has checked it imports)

    return fsspec.open(url, "rb").open()


def _open_streams(source: Iterable[dict], handler: Callable[[Exception], bool]) -> Iterator[dict]:
    for item in source:
        try:
            item["stream"] = open_shard(item["url"])
        except Exception as e:
            e.args = e.args + (item["url"],)
            if handler(e):
                continue
            break
        yield item


# -- bad samples ----------------------------------------------------------------------------------
class BadSample(Exception):
    """A sample that cannot be used; ``reason`` is the short name it is counted under."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class BadDataError(RuntimeError):
    """Too many bad samples in a stream: the data, not a sample, is broken."""


class SkipCounter:
    """Counts used and skipped items by reason; logs skips; stops a stream that is mostly bad."""

    def __init__(self, max_bad_fraction: float = 0.2, min_seen: int = MIN_SEEN, what: str = "stream"):
        self.max_bad_fraction = max_bad_fraction
        self.min_seen = min_seen
        self.what = what
        self.good = 0
        self.reasons: Counter[str] = Counter()

    @property
    def bad(self) -> int:
        return sum(self.reasons.values())

    @property
    def seen(self) -> int:
        return self.good + self.bad

    def ok(self) -> None:
        self.good += 1

    def skip(self, reason: str, detail: str) -> None:
        self.reasons[reason] += 1
        n = self.reasons[reason]
        if n <= 3 or (n & (n - 1)) == 0:  # first few, then at powers of two
            log.warning("skipped sample #%d for %s (%s): %s", n, reason, self.what, detail)
        if self.seen >= self.min_seen and self.bad > self.max_bad_fraction * self.seen:
            raise BadDataError(
                f"{self.bad} of {self.seen} items in {self.what} were bad ({dict(self.reasons)}), more than "
                f"max_bad_fraction={self.max_bad_fraction:g}; inspect the shards with `python -m argen.data "
                f"stats …` and fix or drop them (last problem: {detail})")

    def handler(self, exn: Exception) -> bool:
        """webdataset exception handler for shard-level errors: count, log, carry on."""
        if isinstance(exn, tarfile.TarError | EOFError):
            reason = "tar_error"
        elif isinstance(exn, OSError):
            reason = "open_error"
        elif "duplicate file name" in str(exn):
            reason = "duplicate_member"
        else:
            reason = "read_error"
        self.skip(reason, f"{type(exn).__name__}: {exn}")
        return True

    def as_dict(self) -> dict:
        return {"samples": self.good, "skipped": self.bad, "skipped_reasons": dict(self.reasons)}


# -- decoding -------------------------------------------------------------------------------------
def decode_image(data: bytes, size: int | None) -> tuple[np.ndarray, tuple[int, int], str]:
    """Image bytes -> (H, W, 3) uint8 array at ``size`` (or as stored), original (w, h) and mode,
    through :func:`argen.images.prepare_image`, the path the API's ``encode`` takes too."""
    img = open_image(data)
    orig, mode = img.size, img.mode  # before prepare_image drafts a JPEG to a smaller size
    return np.asarray(prepare_image(img, size)), orig, mode


class SampleDecoder:
    """Raw webdataset sample (bytes per member) -> decoded sample, or :class:`BadSample`.

    ``strict``: a sample must hold what was asked for (an image or tokens when ``load_image``, an
    SVG when ``load_svg``). ``stats`` reads with ``strict=False`` to describe whatever is there.
    """

    def __init__(self, image_size: int | None = 256, load_image: bool = True, load_svg: bool = False,
                 strict: bool = True):
        self.image_size, self.load_image, self.load_svg, self.strict = image_size, load_image, load_svg, strict

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"key": raw.get("__key__", "?"), "url": raw.get("__url__", "?")}
        txt = raw.get("txt")
        if txt is None:
            raise BadSample("no_caption", "no .txt member")
        try:
            caption = txt.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise BadSample("bad_caption", f".txt is not UTF-8 ({e})") from e
        if not caption:
            raise BadSample("no_caption", "empty .txt")
        out["caption"] = caption

        if "tok.npy" in raw:
            try:
                tok = np.load(io.BytesIO(raw["tok.npy"]), allow_pickle=False)
            except Exception as e:
                raise BadSample("bad_tokens", f".tok.npy does not load ({e})") from e
            if not np.issubdtype(tok.dtype, np.integer):
                raise BadSample("bad_tokens", f".tok.npy has dtype {tok.dtype}, not integer")
            out["tokens"] = tok.reshape(-1).astype(np.int64)

        ext = next((e for e in IMAGE_EXTS if e in raw), None)
        if self.load_image and ext is not None:
            try:
                out["image"], out["orig_size"], out["orig_mode"] = decode_image(raw[ext], self.image_size)
            except Exception as e:
                raise BadSample("bad_image", f".{ext} does not decode ({type(e).__name__}: {e})") from e
        elif self.load_image and self.strict and "tokens" not in out and not self.load_svg:
            raise BadSample("no_image", f"no image member ({'/'.join(IMAGE_EXTS)}) and no .tok.npy")

        if "svg" in raw and (self.load_svg or not self.strict):
            try:
                out["svg"] = raw["svg"].decode("utf-8")
            except UnicodeDecodeError as e:
                raise BadSample("bad_svg", f".svg is not UTF-8 ({e})") from e
        elif self.load_svg and self.strict:
            raise BadSample("no_svg", "no .svg member")
        return out


class Collate:
    """List of decoded samples -> batch dict (see :class:`argen.data.ShardDataModule`)."""

    def __init__(self, tokenizer=None, max_text_len: int = 128):
        self.tokenizer, self.max_text_len = tokenizer, max_text_len

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"key": [s["key"] for s in samples], "caption": [s["caption"] for s in samples]}
        if all("image" in s for s in samples):
            batch["image"] = to_tensor([s["image"] for s in samples])
        if all("svg" in s for s in samples):
            batch["svg"] = [s["svg"] for s in samples]
        if all("tokens" in s for s in samples):
            lengths = {len(s["tokens"]) for s in samples}
            if len(lengths) > 1:
                raise ValueError(f"pre-computed .tok.npy of different lengths {sorted(lengths)} in one batch "
                                 f"(keys {batch['key']}); image tokens must have one fixed length")
            batch["tokens"] = torch.from_numpy(np.stack([s["tokens"] for s in samples]))
        if self.tokenizer is not None:
            batch["text_ids"], batch["text_mask"] = self.tokenizer.encode(batch["caption"], self.max_text_len)
        return batch


# -- streams --------------------------------------------------------------------------------------
class ShardStream(torch.utils.data.IterableDataset):
    """Decoded samples (or collated batches) from shards; the one reading path for all callers.

    ``train=True``: this (rank, worker)'s slice of the shards, cycled forever and reshuffled each
    pass, plus a sample shuffle buffer; seeded by (seed, rank, worker, epoch). ``train=False``:
    the shards once, in order, split only across workers (every rank reads the whole set).
    """

    def __init__(self, urls: Sequence[str], decoder: SampleDecoder, *, train: bool = False,
                 batch_size: int | None = None, collate: Callable | None = None, shuffle_buffer: int = 1000,
                 seed: int = 0, max_bad_fraction: float = 0.2):
        super().__init__()
        if not urls:
            raise ValueError("ShardStream needs at least one shard")
        self.urls, self.decoder, self.train = list(urls), decoder, train
        self.batch_size, self.collate = batch_size, collate or Collate()
        self.shuffle_buffer, self.seed, self.max_bad_fraction = shuffle_buffer, seed, max_bad_fraction
        self.epoch = -1
        self._raw = 0
        self.counter = SkipCounter(max_bad_fraction)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        self.epoch += 1
        rng = random.Random(f"argen:{self.seed}:{rank}:{worker}:{self.epoch}")
        what = f"rank {rank}/{world} worker {worker}/{workers}" if self.train else "validation stream"
        counter = self.counter  # kept across epochs: short epochs still add up to a verdict
        counter.what = what
        if self.train:
            source = self._cycle(rng, counter)
        else:
            source = ({"url": u} for u in wds.split_by_worker(self.urls))
        files = tar_file_expander(_open_streams(source, counter.handler), handler=counter.handler)
        samples = self._count_raw(group_by_keys(files, handler=counter.handler))
        if self.train and self.shuffle_buffer > 1:
            samples = wds.filters.shuffle(self.shuffle_buffer, min(self.shuffle_buffer, 100), rng=rng)(samples)
        samples = self._decode(samples, counter)
        if self.batch_size is None:
            yield from samples
            return
        batch: list[dict[str, Any]] = []
        for s in samples:
            batch.append(s)
            if len(batch) == self.batch_size:
                yield self.collate(batch)
                batch = []
        if batch and not self.train:
            yield self.collate(batch)

    def _cycle(self, rng: random.Random, counter: SkipCounter) -> Iterator[dict[str, str]]:
        mine = list(wds.split_by_worker(wds.split_by_node(self.urls)))
        if not mine:
            # Fewer shards than ranks x workers: share shards rather than leave this worker idle.
            warnings.warn(f"{len(self.urls)} training shards for more readers than that: some read the "
                          "same shards; write more shards (prepare --per-shard) for disjoint ones", stacklevel=2)
            mine = list(self.urls)
        last = -1
        while True:  # raw samples (not yet decoded: some wait in the shuffle buffer) or shard errors
            if self._raw + counter.bad == last:
                raise BadDataError(f"training shards {mine[:4]}{'…' if len(mine) > 4 else ''} hold no samples")
            last = self._raw + counter.bad
            order = mine[:]
            rng.shuffle(order)
            for url in order:
                yield {"url": url}

    def _count_raw(self, samples: Iterable[dict]) -> Iterator[dict]:
        self._raw = 0
        for raw in samples:
            self._raw += 1
            yield raw

    def _decode(self, samples: Iterable[dict], counter: SkipCounter) -> Iterator[dict[str, Any]]:
        for raw in samples:
            try:
                out = self.decoder(raw)
            except BadSample as e:
                counter.skip(e.reason, f"{raw.get('__key__')} in {raw.get('__url__')}: {e}")
                continue
            counter.ok()
            yield out


def make_loader(shards: str | Sequence[str], *, train: bool, batch_size: int, num_workers: int = 0,
                image_size: int | None = 256, tokenizer=None, max_text_len: int = 128, load_image: bool = True,
                load_svg: bool = False, steps: int | None = None, shuffle_buffer: int = 1000,
                max_bad_fraction: float = 0.2, seed: int = 0) -> wds.WebLoader:
    """A ``wds.WebLoader`` of batches. Training: ``steps`` batches per epoch on every rank.
    Validation: every batch once, or the first ``steps`` when given."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if train and (steps is None or steps < 1):
        raise ValueError(f"a training loader needs steps ≥ 1 (steps_per_epoch), got {steps}")
    urls = expand_shards(shards)
    stream = ShardStream(urls, SampleDecoder(image_size, load_image, load_svg), train=train,
                         batch_size=batch_size, collate=Collate(tokenizer, max_text_len),
                         shuffle_buffer=shuffle_buffer, seed=seed, max_bad_fraction=max_bad_fraction)
    if num_workers > 0:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked workers; avoid HF's warning
    loader = wds.WebLoader(stream, batch_size=None, num_workers=num_workers,
                           persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())
    if train:
        return loader.with_epoch(steps).with_length(steps, silent=True)
    return loader.slice(steps) if steps else loader


# -- stats ----------------------------------------------------------------------------------------
def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {"min": float(a.min()), "mean": round(float(a.mean()), 2), "median": float(np.median(a)),
            "max": float(a.max())}


def shard_stats(shards: str | Sequence[str], tokenizer=None, progress: bool = True) -> dict[str, Any]:
    """Read every sample once through :class:`ShardStream` (in this process) and summarise."""
    urls = expand_shards(shards)
    stream = ShardStream(urls, SampleDecoder(None, load_image=True, load_svg=True, strict=False),
                         max_bad_fraction=1.0)
    chars, words, toks, widths, heights, svg_chars, tok_lens = [], [], [], [], [], [], []
    modes: Counter[str] = Counter()
    for s in tqdm(stream, desc="reading", unit=" samples", disable=not progress):
        chars.append(len(s["caption"]))
        words.append(len(s["caption"].split()))
        if tokenizer is not None:
            toks.append(len(tokenizer.tokenizer.encode(s["caption"]).ids))
        if "orig_size" in s:
            widths.append(s["orig_size"][0])
            heights.append(s["orig_size"][1])
            modes[s["orig_mode"]] += 1
        if "svg" in s:
            svg_chars.append(len(s["svg"]))
        if "tokens" in s:
            tok_lens.append(len(s["tokens"]))
    out = {"shards": len(urls), **stream.counter.as_dict(),
           "caption_chars": _summary(chars), "caption_words": _summary(words),
           "images": len(widths), "image_width": _summary(widths), "image_height": _summary(heights),
           "image_modes": dict(modes), "svgs": len(svg_chars), "svg_chars": _summary(svg_chars),
           "pre_tokenized": len(tok_lens), "image_tokens": _summary(tok_lens)}
    if tokenizer is not None:
        out["caption_tokens"] = _summary(toks)
    return out


def read_captions(shards: str | Sequence[str], progress: bool = True) -> Iterator[str]:
    """Every caption in the shards, through the same reading code (images are not decoded)."""
    stream = ShardStream(expand_shards(shards), SampleDecoder(None, load_image=False, strict=False),
                         max_bad_fraction=1.0)
    for s in tqdm(stream, desc="captions", unit=" samples", disable=not progress):
        yield s["caption"]


# -- writing --------------------------------------------------------------------------------------
def default_per_shard(n: int) -> int:
    """Samples per shard: ≤ 1000, and ≥ 16 shards where possible, so 2 ranks x 8 workers get one each."""
    return max(1, min(1000, math.ceil(n / 16)))


def write_shards(samples: Iterable[dict[str, Any]], out: str | Path, split: str, per_shard: int,
                 total: int | None = None, progress: bool = True) -> list[Path]:
    """Write samples (``__key__`` plus member name -> bytes/str/dict) to ``out/{split}-NNNNNN.tar``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
        old.unlink()
    # A whole-second mtime keeps tarfile from adding a PAX header to every member (webdataset's
    # default float mtime does), which halves header parsing when reading; fixed, it makes
    # shards reproducible byte for byte.
    pattern = str(out / f"{split}-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0, mtime=SHARD_MTIME) as sink:
        for s in tqdm(samples, total=total, desc=f"{out.name}/{split}", unit=" samples", disable=not progress):
            sink.write(s)
    return sorted(out.glob(f"{split}-*.tar"))
