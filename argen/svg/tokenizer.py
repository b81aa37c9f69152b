"""IconShop-style SVG target tokenizer: filled paths <-> one token per grid point.

``encode`` normalizes an SVG (see :mod:`argen.svg.parse`) into the ``[0, grid]`` square and rounds
every point to the nearest integer point (the far edge ``grid`` is clamped to ``grid - 1``);
``decode`` writes those integers back, so a decoded SVG re-encodes to the same tokens. Rounding
(not cells) keeps icons drawn on integer design grids exact at grids that are multiples of theirs.
Segments that collapse onto one point are dropped (they draw nothing when filled), which also keeps
sequences short.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path as FsPath
from typing import Any

import numpy as np
import torch

from argen.export import CONFIG, read_config
from argen.svg import tokens as T
from argen.svg.errors import SVGError
from argen.svg.geometry import Path, Segment
from argen.svg.parse import normalize, normalize_paths, paths_to_svg
from argen.targets import Grammar, TargetTokenizer

_CACHE_ENTRIES = 20_000  # encoded training icons kept in memory (epochs re-read the same SVGs)
PLAN_COVERAGE = 0.2  # a plan cell is set where ink covers this share of it (a 2-unit stroke crossing
# a cell of a 24-unit icon at plan 8 covers about two thirds)


class SVGTokenizer(TargetTokenizer):
    """Deterministic SVG-path target tokenizer (no weights).

    Args:
        grid: points per axis; coordinates are integers ``0 .. grid-1`` in the viewBox square.
        max_len: longest target sequence, EOS included; longer samples are skipped in training.
        fim_rate: share of training samples rewritten as fill-in-the-middle (IconShop: 0.5).
        plan: sides of coarse ink masks written before the paths, coarsest first (``[]`` or 0: none;
            an int ``n`` means ``[n]``; sides 2..16), each row-major, 8 cells a token. Why: the first
            point of a drawing names which drawing follows, and a small decoder learns to continue
            that prefix long before it learns which first point a caption asks for; a coarse mask is
            what drawings of one concept share across icon sets, so the caption decides the plan and
            the plan steers the paths. Decoding skips it.
        canonical: write each closed outline from its topmost-leftmost point, and outlines and paths
            top to bottom (DeepSVG's order), so the first point follows from the drawing's shape
            rather than from how its author happened to draw it. The filled drawing is the same.
    """

    kind = "svg_tokenizer"
    # A point depends on the point before it, so Jacobi drafts past a rejected one are rarely right;
    # drafts looked up in the training drawings are, and four per pass pay best (BENCHMARKS.md,
    # "Corpus drafts"). 200,000 tokens cover a demo corpus many times over; their table takes about
    # a second and 200 MB to build at the first speculative call.
    speculative_window = 4
    draft_corpus_tokens = 200_000

    def __init__(self, grid: int = 200, max_len: int = 512, fim_rate: float = 0.0,
                 plan: int | list[int] = 0, canonical: bool = False):
        if not isinstance(grid, int) or not 2 <= grid <= 1024:
            raise ValueError(f"SVGTokenizer grid must be an int in [2, 1024], got {grid!r}")
        if not isinstance(max_len, int) or max_len < 8:
            raise ValueError(f"SVGTokenizer max_len must be an int >= 8, got {max_len!r}")
        if not 0.0 <= fim_rate <= 1.0:
            raise ValueError(f"SVGTokenizer fim_rate must be in [0, 1], got {fim_rate!r}")
        sides = ([plan] if plan else []) if isinstance(plan, int) else plan
        if not isinstance(sides, (list, tuple)) or not all(isinstance(n, int) and 2 <= n <= 16 for n in sides):
            raise ValueError(f"SVGTokenizer plan must be 0 or mask sides in [2, 16], got {plan!r}")
        self.grid, self.max_len, self.fim_rate, self.plan = grid, max_len, float(fim_rate), tuple(sides)
        self.canonical = bool(canonical)
        self.plan_len = T.plan_len(self.plan)
        self.vocab_size = T.vocab_size(grid, self.plan_len)
        self._plan_base = T.plan_base(grid)
        self.eos_id, self.pad_id = T.EOS, T.PAD
        self.feature_sizes = (grid + 1, grid + 1)
        self.skipped: Counter[str] = Counter()
        self._grammar: Grammar | None = None
        self._device = torch.device("cpu")
        self._cache: dict[str, list[list[int]] | SVGError] = {}
        self._plans: dict[str, list[int]] = {}

    def __repr__(self) -> str:
        extra = (f", plan={list(self.plan)}" if self.plan else "") + (", canonical=True" if self.canonical else "")
        return f"SVGTokenizer(grid={self.grid}, max_len={self.max_len}, fim_rate={self.fim_rate}{extra})"

    # -- SVG -> tokens ---------------------------------------------------------------------------
    def normalize(self, svg: str) -> str:
        """The SVG as absolute M/L/C paths in the ``grid`` frame, before quantization."""
        return normalize(svg, self.grid)

    def _quantize(self, p: tuple[float, float]) -> tuple[int, int]:
        g = self.grid - 1
        return (min(max(math.floor(p[0] + 0.5), 0), g), min(max(math.floor(p[1] + 0.5), 0), g))

    def _fit(self, p0: tuple[float, float], seg: Segment, depth: int = 0) -> list[Segment]:
        """Split a cubic whose controls leave the grid (clamping them would bend the curve)."""
        lo, hi = -1.0, float(self.grid)
        if len(seg) == 1 or depth == 3 or all(lo <= v <= hi for p in seg[:2] for v in p):
            return [seg]
        c1, c2, p3 = seg
        mid = lambda a, b: ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)  # noqa: E731
        p01, p12, p23 = mid(p0, c1), mid(c1, c2), mid(c2, p3)
        p012, p123 = mid(p01, p12), mid(p12, p23)
        m = mid(p012, p123)
        return self._fit(p0, (p01, p012, m), depth + 1) + self._fit(m, (p123, p23, p3), depth + 1)

    def _canonical(self, path: Path) -> Path:
        """Every outline closed explicitly (filling closes it anyway) and started at its topmost-leftmost
        vertex, outlines sorted by that vertex."""
        key = lambda p: self._quantize(p)[::-1]  # noqa: E731  (y, x): top to bottom, then left to right
        out = []
        for start, segs in path:
            segs = list(segs)
            if not segs:
                continue
            if self._quantize(segs[-1][-1]) != self._quantize(start):
                segs.append((start,))
            vertices = [start] + [seg[-1] for seg in segs[:-1]]
            k = min(range(len(vertices)), key=lambda i: key(vertices[i]))
            out.append((vertices[k], segs[k:] + segs[:k]))
        return sorted(out, key=lambda sub: key(sub[0]))

    def _path_tokens(self, path: Path) -> list[int]:
        if self.canonical:
            path = self._canonical(path)
        out = [T.PATH]
        for start, segs in path:
            cur = self._quantize(start)
            sub = [T.CMD_M, self._point(cur)]
            prev = start
            for seg in (piece for s in segs for piece in self._fit(prev, s)):
                prev = seg[-1]
                qs = [self._quantize(p) for p in seg]
                if all(q == cur for q in qs):
                    continue  # collapsed onto one point: draws nothing
                sub.append(T.CMD_L if len(qs) == 1 else T.CMD_C)
                sub.extend(self._point(q) for q in qs)
                cur = qs[-1]
            if len(sub) > 2:
                out.extend(sub)
        return out if len(out) > 1 else []

    def _point(self, q: tuple[int, int]) -> int:
        return T.OFFSET + q[0] + q[1] * self.grid

    def encode_paths(self, svg: str) -> list[list[int]]:
        """Token ids of each drawn path (``PATH M …``), cached; raises :class:`SVGError`."""
        hit = self._cache.get(svg) if isinstance(svg, str) else None
        if hit is None:
            try:
                paths = [t for t in map(self._path_tokens, normalize_paths(svg, self.grid)) if t]
                if self.canonical:
                    paths.sort(key=lambda p: p[2])  # the first point's id: rows, then columns
                hit = paths if paths else SVGError("SVG draws nothing (no filled area)", "empty")
            except SVGError as e:
                hit = e
            if isinstance(svg, str):
                if len(self._cache) >= _CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[svg] = hit
        if isinstance(hit, SVGError):
            raise SVGError(str(hit), hit.reason)
        return hit

    def plan_tokens(self, svg: str) -> list[int]:
        """The plan's ids (empty without a plan): the tokenized drawing's ink mask at each side in
        ``plan``, a cell set where ink covers at least a fifth of it, the cells 8 at a time (row-major)
        as the bits of one id."""
        if not self.plan:
            return []
        hit = self._plans.get(svg)
        if hit is None:
            from argen.svg.metrics import raster_coverage  # resvg loads on first use

            paths = self.encode_paths(svg)
            drawn = self._decode_row([t for p in paths for t in p])
            bits, hit = T.PLAN_BITS, []
            for side in self.plan:
                cells = (raster_coverage(drawn, side) >= PLAN_COVERAGE).ravel()
                hit += [self._plan_base + int(sum(1 << i for i in np.flatnonzero(cells[c: c + bits])))
                        for c in range(0, len(cells), bits)]
            if len(self._plans) >= _CACHE_ENTRIES:
                self._plans.clear()
            self._plans[svg] = hit
        return list(hit)

    def encode(self, svg: str) -> torch.Tensor:
        """1-D ids of the whole drawing, ending with EOS (not truncated to ``max_len``)."""
        return torch.tensor(self.plan_tokens(svg) + [t for p in self.encode_paths(svg) for t in p] + [T.EOS])

    def encode_prefix(self, svg: str) -> torch.Tensor:
        """Ids of a partial drawing without EOS, for the decoder to continue."""
        return self.encode(svg)[:-1]

    def encode_fim(self, svg: str, index: int) -> torch.Tensor:
        """Fill-in-the-middle ids: path ``index`` moved to the end (``… HOLE … MIDDLE path EOS``)."""
        paths = self.encode_paths(svg)
        if not -len(paths) <= index < len(paths):
            raise IndexError(f"path index {index} out of range for {len(paths)} paths")
        return torch.tensor(self.plan_tokens(svg) + self._fim(paths, index % len(paths)))

    def encode_fill(self, svg: str, index: int) -> torch.Tensor:
        """Ids that ask the decoder to redraw path ``index``: the FIM sequence up to ``MIDDLE``."""
        ids = self.encode_fim(svg, index)
        return ids[: int((ids == T.MIDDLE).nonzero()[0]) + 1]

    @staticmethod
    def _fim(paths: list[list[int]], k: int) -> list[int]:
        flat = lambda ps: [t for p in ps for t in p]  # noqa: E731
        return flat(paths[:k]) + [T.HOLE] + flat(paths[k + 1:]) + [T.MIDDLE] + paths[k] + [T.EOS]

    def encode_batch(self, batch: dict[str, Any]) -> torch.Tensor:
        """``batch["svg"]`` -> (B, L) ids padded with PAD; bad or too long samples become all-PAD
        rows (no loss) and are counted in :attr:`skipped` by reason."""
        svgs = batch["svg"]
        if isinstance(svgs, (str, bytes)):
            raise TypeError('encode_batch expects batch["svg"] to be a list of SVG strings')
        rows: list[list[int]] = []
        for svg in svgs:
            try:
                paths = self.encode_paths(svg)
            except SVGError as e:
                self.skipped[e.reason] += 1
                rows.append([])
                continue
            drawing = [t for p in paths for t in p]
            if self.plan_len + len(drawing) + 1 > self.max_len:  # checked first: no plan drawn for a skip
                self.skipped["too_long"] += 1
                rows.append([])
                continue
            plan = self.plan_tokens(svg)
            seq = plan + drawing + [T.EOS]
            if self.fim_rate > 0 and len(seq) + 2 <= self.max_len and torch.rand(()) < self.fim_rate:
                seq = plan + self._fim(paths, int(torch.randint(len(paths), ())))
            rows.append(seq)
        out = torch.full((len(rows), max([1] + [len(r) for r in rows])), T.PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    # -- decoder hooks ---------------------------------------------------------------------------
    def token_features(self, inputs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, 2): (x+1, y+1) for point tokens, 0 for anything else (incl. BOS)."""
        coord = inputs - T.OFFSET
        is_point = (inputs >= T.OFFSET) & (inputs < self._plan_base)
        x = torch.where(is_point, coord % self.grid + 1, 0)
        y = torch.where(is_point, coord // self.grid + 1, 0)
        return torch.stack([x, y], dim=-1)

    def id_features(self) -> torch.Tensor:
        """(vocab_size, 2): a point id's (x+1, y+1), 0 for the other ids (features follow the id)."""
        ids = torch.arange(self.vocab_size)[None]
        return self.token_features(ids, torch.zeros_like(ids))[0]

    def grammar(self) -> Grammar:
        if self._grammar is None:
            self._grammar = T.build_grammar(self.grid, self.plan_len).to(self._device)
        return self._grammar

    def to(self, device: str | torch.device) -> SVGTokenizer:
        """Keep the grammar tables (its only tensors) on ``device``, so sampling there copies nothing."""
        self._device = torch.device(device)
        if self._grammar is not None:
            self._grammar = self._grammar.to(self._device)
        return self

    # -- tokens -> SVG ---------------------------------------------------------------------------
    def decode(self, ids: torch.Tensor) -> str:
        """1-D ids (what :meth:`encode` returns) -> one SVG string, so ``decode(encode(svg))`` is an SVG.

        Lenient: unfinished commands, tokens out of place and ids outside the vocabulary (e.g. the
        decoder's BOS) are dropped; never raises on a row's content.
        """
        return self._decode_row(self._one_row(ids).tolist())

    def batch_decode(self, ids: torch.Tensor) -> list[str]:
        """(B, L) ids -> one SVG per row (see :meth:`decode`)."""
        ids = torch.as_tensor(ids)
        if ids.dim() != 2:
            raise ValueError(f"batch_decode takes (B, L) ids, got shape {tuple(ids.shape)}; use decode for one")
        return [self._decode_row(r) for r in ids.tolist()]

    def decode_paths(self, ids: list[int]) -> list[list[tuple[tuple[int, int], list[tuple]]]]:
        """Ids -> grid-cell paths (FIM middle re-inserted at its hole)."""
        main: list = []
        middle: list = []
        target = main
        hole: int | None = None
        path: list | None = None
        sub: tuple | None = None
        cmd, pts = None, []

        def close_path() -> None:
            nonlocal path, sub
            if path is not None:
                if sub is not None and sub[1]:
                    path.append(sub)
                if path:
                    target.append(path)
            path, sub = None, None

        for t in ids:
            t = int(t)
            if t in (T.EOS, T.PAD):
                break
            if t < 0 or t >= self._plan_base:  # outside the vocabulary, or a plan id
                continue
            if t >= T.OFFSET:
                if cmd is None:
                    continue
                pts.append(((t - T.OFFSET) % self.grid, (t - T.OFFSET) // self.grid))
                if len(pts) < T.POINTS[cmd]:
                    continue
                if cmd == T.CMD_M:
                    if path is None:
                        path = []
                    elif sub is not None and sub[1]:
                        path.append(sub)
                    sub = (pts[0], [])
                elif sub is not None:
                    sub[1].append(tuple(pts))
                cmd, pts = None, []
                continue
            cmd, pts = None, []
            if t in T.POINTS:
                cmd = t
            elif t == T.PATH:
                close_path()
                path = []
            elif t == T.HOLE:
                close_path()
                if hole is None and target is main:
                    hole = len(main)
            elif t == T.MIDDLE:
                close_path()
                target = middle
        close_path()
        at = len(main) if hole is None else hole
        return main[:at] + middle + main[at:]

    def _decode_row(self, ids: list[int]) -> str:
        paths = self.decode_paths(ids)
        return paths_to_svg(paths, self.grid, fmt=lambda v: str(int(v)))

    # -- export ----------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"grid": self.grid, "max_len": self.max_len, "fim_rate": self.fim_rate, "plan": list(self.plan),
                "canonical": self.canonical}

    def save_pretrained(self, directory: str | FsPath) -> None:
        """Write ``config.json`` (``argen_kind: svg_tokenizer`` and the constructor args)."""
        directory = FsPath(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"argen_kind": self.kind, **self.config(), "vocab_size": self.vocab_size,
                  "layout": "pad eos path M L C hole middle, then offset 8 + x + y*grid, then plan ids"}
        (directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | FsPath, device: str | torch.device = "cpu") -> SVGTokenizer:
        """The tokenizer :meth:`save_pretrained` wrote; its grammar tables are built on ``device``."""
        config = read_config(directory, cls.kind)
        tok = cls(grid=config["grid"], max_len=config["max_len"], fim_rate=config.get("fim_rate", 0.0),
                  plan=config.get("plan", 0), canonical=config.get("canonical", False))
        return tok.to(device)
