"""SVG path data (the ``d`` attribute) -> absolute subpaths of lines and cubics.

Every command of SVG 1.1 is accepted (M L H V C S Q T A Z, absolute and relative). H/V become
lines, Q/T are elevated exactly to cubics, A becomes ≤ 90° cubics, Z is dropped because filled
outlines close implicitly. Errors raise :class:`SVGError` instead of rendering "up to the error"
as browsers do: a half-valid path is not a sample we want to train on.
"""

from __future__ import annotations

import math
import re

from argen.svg.errors import SVGError
from argen.svg.geometry import Path, Point, Segment, arc_to_cubics, quad_to_cubic

MAX_PATH_NUMBERS = 60_000  # numbers in one ``d``; icons use a few hundred

NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TOKEN = re.compile(rf"\s*,?\s*(?:([MmZzLlHhVvCcSsQqTtAa])|({NUMBER})|(\S))")
_ARITY = {"m": 2, "z": 0, "l": 2, "h": 1, "v": 1, "c": 6, "s": 4, "q": 4, "t": 2, "a": 7}


def _tokens(d: str) -> list[str]:
    out: list[str] = []
    numbers = 0
    for m in _TOKEN.finditer(d):
        cmd, num, bad = m.groups()
        if bad is not None:
            rest = d[m.start(3):m.start(3) + 8]
            if re.match(r"[+-]?(nan|inf)", rest, re.IGNORECASE):
                raise SVGError(f"non-finite number {rest!r} in path data", "malformed")
            if bad.isalpha():
                raise SVGError(f"unknown path command {bad!r}", "malformed")
            raise SVGError(f"unexpected {bad!r} at offset {m.start(3)} of path data", "malformed")
        if cmd is not None:
            out.append(cmd)
            continue
        out.append(num)
        numbers += 1
        if numbers > MAX_PATH_NUMBERS:
            raise SVGError(f"path data has more than {MAX_PATH_NUMBERS} numbers", "limit")
    return out


def parse_path_data(d: str) -> Path:
    """Parse ``d`` into absolute subpaths (local coordinates, before any transform)."""
    return parse_path_data_closed(d)[0]


def parse_path_data_closed(d: str) -> tuple[Path, list[bool]]:
    """Like :func:`parse_path_data`, plus whether each subpath ends with Z (strokes join a closed
    subpath's ends and cap an open one's)."""
    toks = _tokens(d)
    path: Path = []
    closed: list[bool] = []
    segs: list[Segment] | None = None
    cur: Point = (0.0, 0.0)
    start: Point = (0.0, 0.0)
    prev_cubic: Point | None = None  # second control of the previous C/S, for S reflection
    prev_quad: Point | None = None  # control of the previous Q/T, for T reflection
    i, cmd = 0, None
    n = len(toks)
    while i < n:
        tok = toks[i]
        if tok[0].isalpha():
            cmd = tok
            i += 1
            if cmd in "Zz":
                if segs is not None:
                    closed[-1] = True
                cur, segs, prev_cubic, prev_quad = start, None, None, None
                continue
        elif cmd is None:
            raise SVGError("path data must start with a moveto (M or m)", "malformed")
        elif cmd in "Zz":
            raise SVGError(f"number {tok} after closepath (Z) without a command", "malformed")
        lo = cmd.lower()
        if not path and lo != "m":
            raise SVGError("path data must start with a moveto (M or m)", "malformed")
        k = _ARITY[lo]
        args: list[float] = []
        for j in range(k):
            if i >= n or toks[i][0].isalpha():
                raise SVGError(f"path command {cmd!r} expects {k} numbers", "malformed")
            t = toks[i]
            if lo == "a" and j in (3, 4):  # flags may be written without separators: "a1 1 0 011 1"
                if t[0] not in "01":
                    raise SVGError(f"arc flag must be 0 or 1, got {t!r}", "malformed")
                args.append(float(t[0]))
                if len(t) > 1:
                    toks[i] = t[1:]  # the rest of "011" is the next argument
                else:
                    i += 1
                continue
            try:
                v = float(t)
            except ValueError:
                raise SVGError(f"invalid number {t!r} in path data", "malformed") from None
            if not math.isfinite(v):
                raise SVGError(f"non-finite number {t!r} in path data", "malformed")
            args.append(v)
            i += 1
        rel = cmd.islower()
        ox, oy = cur if rel else (0.0, 0.0)
        if lo == "m":
            cur = start = (args[0] + ox, args[1] + oy)
            segs = []
            path.append((start, segs))
            closed.append(False)
            cmd = "l" if rel else "L"  # extra coordinate pairs are implicit linetos
            prev_cubic = prev_quad = None
            continue
        if segs is None:  # drawing after Z starts a new subpath at the old start
            segs = []
            path.append((cur, segs))
            closed.append(False)
        c1: Point
        if lo == "l":
            p = (args[0] + ox, args[1] + oy)
            seg: list[Segment] = [(p,)]
        elif lo == "h":
            p = (args[0] + ox, cur[1])
            seg = [(p,)]
        elif lo == "v":
            p = (cur[0], args[0] + oy)
            seg = [(p,)]
        elif lo == "c":
            c1 = (args[0] + ox, args[1] + oy)
            c2 = (args[2] + ox, args[3] + oy)
            p = (args[4] + ox, args[5] + oy)
            seg = [(c1, c2, p)]
        elif lo == "s":
            c1 = (2 * cur[0] - prev_cubic[0], 2 * cur[1] - prev_cubic[1]) if prev_cubic else cur
            c2 = (args[0] + ox, args[1] + oy)
            p = (args[2] + ox, args[3] + oy)
            seg = [(c1, c2, p)]
        elif lo == "q":
            q = (args[0] + ox, args[1] + oy)
            p = (args[2] + ox, args[3] + oy)
            seg = [quad_to_cubic(cur, q, p)]
        elif lo == "t":
            q = (2 * cur[0] - prev_quad[0], 2 * cur[1] - prev_quad[1]) if prev_quad else cur
            p = (args[0] + ox, args[1] + oy)
            seg = [quad_to_cubic(cur, q, p)]
        else:  # arc
            p = (args[5] + ox, args[6] + oy)
            seg = arc_to_cubics(cur, args[0], args[1], args[2], bool(args[3]), bool(args[4]), p)
        prev_cubic = seg[0][1] if lo in "cs" else None
        prev_quad = q if lo in "qt" else None
        segs.extend(s for s in seg if not (len(s) == 1 and s[0] == cur))
        cur = p
    return path, closed
