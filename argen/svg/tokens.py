"""The SVG token language: id layout and the automaton that accepts exactly the valid sequences.

Layout (IconShop's, plus two fill-in-the-middle markers)::

    0 PAD   1 EOS   2 PATH (path start)   3 M   4 L   5 C   6 HOLE   7 MIDDLE
    8 + x + y·grid   one token per grid point (x, y), 0 ≤ x, y < grid
    8 + grid² + r    with a plan: one token per 8 cells of its masks, their bits r (0 ≤ r < 256)

A drawing is ``(PATH M p (L p | C p p p | M p)*)+ EOS``; every ``M p`` is followed by at least one
segment. Fill-in-the-middle moves one path to the end: ``prefix HOLE suffix MIDDLE path EOS``. With
a plan, ``plan_len`` tokens come first: the drawing's coarse ink masks, coarsest first, each row-major.
"""

from __future__ import annotations

import torch

from argen.targets import Grammar

PAD, EOS, PATH, CMD_M, CMD_L, CMD_C, HOLE, MIDDLE = range(8)
OFFSET = 8
POINTS = {CMD_M: 1, CMD_L: 1, CMD_C: 3}  # grid points after each command token

# per-phase states; phase 0: before HOLE, 1: after HOLE, 2: after MIDDLE
_NEED_M, _M_PT, _AFTER_M, _L_PT, _C1, _C2, _C3, _READY = range(8)
_PER_PHASE = 8
START = 3 * _PER_PHASE  # nothing written yet: PATH or HOLE
AFTER_HOLE = START + 1  # a path boundary in phase 1 (suffix may be empty)
AFTER_MIDDLE = START + 2  # the moved path must follow
END = START + 3  # after EOS: only PAD
NUM_STATES = END + 1  # without a plan
PLAN_STATE = NUM_STATES  # the plan's token i is written in state PLAN_STATE + i
PLAN_BITS = 8  # mask cells per plan token


def plan_len(sides: tuple[int, ...]) -> int:
    """Tokens a plan of masks with these sides takes, ``PLAN_BITS`` cells a token."""
    return sum(-(-n * n // PLAN_BITS) for n in sides)


def plan_base(grid: int) -> int:
    """The first id after the grid points: the first plan id."""
    return OFFSET + grid * grid


def vocab_size(grid: int, plan_len: int = 0) -> int:
    return plan_base(grid) + (1 << PLAN_BITS if plan_len else 0)


def build_grammar(grid: int, plan_len: int = 0) -> Grammar:
    """The DFA over ``vocab_size(grid, plan_len)`` tokens; disallowed entries keep their state (masked out)."""
    V = vocab_size(grid, plan_len)
    n_states = NUM_STATES + plan_len
    allowed = torch.zeros(n_states, V, dtype=torch.bool)
    transition = torch.arange(n_states).unsqueeze(1).repeat(1, V)

    def allow(state: int, token: int | slice, nxt: int) -> None:
        allowed[state, token] = True
        transition[state, token] = nxt

    coords = slice(OFFSET, plan_base(grid))
    for phase in range(3):
        s = phase * _PER_PHASE
        allow(s + _NEED_M, CMD_M, s + _M_PT)
        allow(s + _M_PT, coords, s + _AFTER_M)
        for st in (s + _AFTER_M, s + _READY):
            allow(st, CMD_L, s + _L_PT)
            allow(st, CMD_C, s + _C1)
        allow(s + _L_PT, coords, s + _READY)
        allow(s + _C1, coords, s + _C2)
        allow(s + _C2, coords, s + _C3)
        allow(s + _C3, coords, s + _READY)
        allow(s + _READY, CMD_M, s + _M_PT)
        allow(s + _READY, PATH, s + _NEED_M)
        if phase == 0:
            allow(s + _READY, HOLE, AFTER_HOLE)
        if phase == 1:
            allow(s + _READY, MIDDLE, AFTER_MIDDLE)
        if phase != 1:
            allow(s + _READY, EOS, END)
    allow(START, PATH, _NEED_M)
    allow(START, HOLE, AFTER_HOLE)
    allow(AFTER_HOLE, PATH, _PER_PHASE + _NEED_M)
    allow(AFTER_HOLE, MIDDLE, AFTER_MIDDLE)
    allow(AFTER_MIDDLE, PATH, 2 * _PER_PHASE + _NEED_M)
    allow(END, PAD, END)
    for i in range(plan_len):
        allow(PLAN_STATE + i, slice(plan_base(grid), V), PLAN_STATE + i + 1 if i + 1 < plan_len else START)
    return Grammar(allowed, transition, PLAN_STATE if plan_len else START)
