"""The OpenMP wait policy of argen's command lines: one preamble, called before torch loads.

OpenMP threads that spin-wait for each other stall whenever another process shares the cores, and
argen's steps are many small ops; on a shared 2-core machine the CLIs ran several times slower
without ``PASSIVE`` (BENCHMARKS.md, "Sampling", the wait-policy paragraph). On a CPU of your own, ``ACTIVE`` is
faster; an ``OMP_WAIT_POLICY`` already in the environment always wins. OpenMP reads the variable
once, when torch loads it, so a command line calls :func:`prefer_passive_wait` before importing
anything that imports torch (hence the E402 exemptions in ruff.toml). The library never sets it.
"""

import os


def prefer_passive_wait() -> None:
    """Default ``OMP_WAIT_POLICY`` to ``PASSIVE`` unless the environment sets it."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
