"""Requests from many users for one model, served as few :meth:`Generator.generate` calls.

A decoding step for 32 rows costs little more than one for 4 (each step is bound by per-step
overhead and weight reads, not by rows), so a server that runs each user's request on its own
wastes most of the machine. :class:`Batcher` owns one model and one worker thread: requests wait in
a bounded queue, and the worker takes every waiting request with the same sampling settings (up to
``max_batch``) into one ``generate`` call, with one seed per request, so each user gets exactly what
they would have got alone. A full queue refuses at once (:class:`Busy`) instead of piling up.
Measured gains are in BENCHMARKS.md (``benchmarks/serve.py``).

The batcher knows nothing of web pages: it hands back token rows for previews and final outputs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from argen.generator import Generator
from argen.sampling_config import UNSET

RECENT_BATCHES = 1024


class Busy(RuntimeError):
    """The queue is full: try again in a moment."""


@dataclass
class Request:
    """One user's request. ``svg`` set: a completion (``Generator.complete``), run on its own since
    its forced prefix is its own; otherwise a text prompt that can share a batch.

    ``updates`` receives ``("tokens", (n, t) tensor)`` every few steps when ``preview`` is set, then
    one ``("done", outputs)`` or ``("error", message)``.
    """

    prompt: str
    num_samples: int
    seed: int
    cfg_scale: float = UNSET  # UNSET: the export's setting; top_k/top_p None: off
    temperature: float = UNSET
    top_k: int | None = UNSET
    top_p: float | None = UNSET
    svg: str | None = None
    fill: int | None = None
    preview: bool = False
    updates: queue.Queue = field(default_factory=queue.Queue)

    @property
    def settings(self) -> dict:
        return {"cfg_scale": self.cfg_scale, "temperature": self.temperature, "top_k": self.top_k,
                "top_p": self.top_p}

    def key(self) -> tuple | None:
        """Requests with equal keys can share one ``generate`` call; ``None``: never shared."""
        return None if self.svg is not None else tuple(self.settings.values())


class Batcher:
    """One worker thread serving :class:`Request` s for one :class:`Generator`.

    Args:
        max_batch: requests per ``generate`` call.
        max_queue: requests that may wait; one more raises :class:`Busy`.
        wait: seconds the worker waits for company when it finds fewer than ``max_batch`` requests
            (users who press the button at the same moment land in one batch).
        preview_every: send partial tokens every this many decoding steps (0: never).
    """

    def __init__(self, generator: Generator, max_batch: int = 8, max_queue: int = 16, wait: float = 0.05,
                 preview_every: int = 8):
        if max_batch < 1 or max_queue < 1 or wait < 0 or preview_every < 0:
            raise ValueError(f"bad batcher limits: max_batch={max_batch}, max_queue={max_queue}, wait={wait}, "
                             f"preview_every={preview_every}")
        self.generator = generator
        self.max_batch, self.max_queue, self.wait, self.preview_every = max_batch, max_queue, wait, preview_every
        # requests per generate call (the last RECENT_BATCHES of them: a server runs for weeks), for tests and
        # benchmarks
        self.batches: deque[int] = deque(maxlen=RECENT_BATCHES)
        self.active = 0  # requests in the generate call now running
        self._pending: list[Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="argen-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> Request:
        with self._cond:
            if self._closed:
                raise RuntimeError("this batcher is closed")
            if len(self._pending) >= self.max_queue:
                raise Busy("busy, try again in a moment")
            self._pending.append(request)
            self._cond.notify()
        return request

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=60)

    # -- worker -------------------------------------------------------------------------------------
    def _take(self) -> list[Request] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            lonely = len(self._pending) < self.max_batch and self._pending[0].key() is not None
        if lonely and self.wait:  # wait for company, but no longer than needed to fill a batch
            deadline = time.monotonic() + self.wait
            with self._cond:
                while len(self._pending) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
        with self._cond:
            if self._closed:
                return None
            first = self._pending[0]
            key = first.key()
            batch = [first] if key is None else [r for r in self._pending if r.key() == key][: self.max_batch]
            taken = {id(r) for r in batch}
            self._pending = [r for r in self._pending if id(r) not in taken]
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            self.batches.append(len(batch))
            self.active = len(batch)
            try:
                for r, outputs in zip(batch, self._run(batch)):
                    r.updates.put(("done", outputs))
            except Exception as e:  # noqa: BLE001  (the worker must outlive any one request)
                for r in batch:
                    r.updates.put(("error", f"{type(e).__name__}: {e}"))
            finally:
                self.active = 0

    def _run(self, batch: list[Request]) -> list[list]:
        n = max(r.num_samples for r in batch)  # sample j depends on (seed, j) only: trimming is exact
        every = self.preview_every

        def on_step(first_row: int, tokens: torch.Tensor) -> None:
            if not every or tokens.shape[1] % every:
                return
            for i, r in enumerate(batch):
                lo = i * n - first_row
                if r.preview and 0 <= lo < tokens.shape[0]:
                    r.updates.put(("tokens", tokens[lo : lo + r.num_samples].clone()))

        gen, first = self.generator, batch[0]
        if first.svg is not None:
            return [gen.complete(first.prompt, first.svg, n, fill=first.fill, seed=first.seed, on_step=on_step,
                                 **first.settings)]
        per_prompt = gen.generate([r.prompt for r in batch], num_samples=n, seed=[r.seed for r in batch],
                                  batch_size=len(batch) * n, on_step=on_step, **first.settings)
        return [outs[: r.num_samples] for r, outs in zip(batch, per_prompt)]
