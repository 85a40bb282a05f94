"""Wall-clock timing of a step's parts.

:class:`Stopwatch` is true on GPU: it synchronises before reading the clock. :class:`ExchangeTimer`
times an exchange that overlaps backward (bucket by bucket, in the trainer or in a DDP hook): how
long the buckets were compressed, how long some collective was in flight, and how much of it
backward hid. It reads host clocks (``time.perf_counter``): on CUDA these are the times work was
issued and reported done, not the device's.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import torch

__all__ = ["ExchangeTimer", "IterationTiming", "Stopwatch"]


class Stopwatch:
    """``with stopwatch: ...`` adds the block's elapsed milliseconds to ``stopwatch.ms``.

    On CUDA the device is synchronised on entry and exit, so asynchronous kernels are counted in
    the block that launched them rather than in whichever later block happens to wait for them.
    """

    def __init__(self, device: torch.device) -> None:
        self._sync = torch.cuda.synchronize if device.type == "cuda" else None
        self.ms = 0.0
        self._start = 0.0

    def reset(self) -> None:
        self.ms = 0.0

    def __enter__(self) -> "Stopwatch":
        if self._sync is not None:
            self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self._sync is not None:
            self._sync()
        self.ms += (time.perf_counter() - self._start) * 1e3


class IterationTiming(NamedTuple):
    """Where one iteration's exchange time went, in ms, on this process.

    select_ms: compressing buckets (on backward's thread, as each is filled);
    exposed_ms: from the last bucket's start (backward has nothing left to compute) to the last
        collective's completion: the exchange backward did not hide, at most ``busy_ms``;
    busy_ms: the time some bucket's collective was in flight (the union of their intervals).
    """

    select_ms: float
    exposed_ms: float
    busy_ms: float


def union_ms(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of ``(start, end)`` intervals (seconds in, ms out)."""
    total, reach = 0.0, -float("inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total * 1e3


class ExchangeTimer:
    """Each bucket is reported as its collective starts (:meth:`timed`); after backward,
    :meth:`finish` gives the iteration's :class:`IterationTiming`, also kept as ``last``."""

    def __init__(self) -> None:
        self._intervals: list[list[float]] = []
        self._select_s = 0.0
        self._last_started = 0.0
        self._unfinished = False
        self.last = IterationTiming(0.0, 0.0, 0.0)

    def timed(self, started: float, compressed_at: float, future: Any) -> Any:
        """One bucket: compression from ``started`` to ``compressed_at`` (perf_counter seconds),
        then its collective, in flight until ``future`` completes; returns ``future`` chained."""
        if self._unfinished:  # nobody read the last iteration's timing (a hook user): close it now
            self.finish()
        self._select_s += compressed_at - started
        interval = [compressed_at, compressed_at]
        self._intervals.append(interval)  # its end is set on whichever thread completes the future

        def done(finished: Any) -> Any:
            interval[1] = time.perf_counter()
            return finished.value()

        self._last_started = time.perf_counter()
        return future.then(done)

    def iteration_ended(self) -> None:
        """After the iteration's last bucket was handed over (its collective may still run)."""
        self._unfinished = True

    def finish(self) -> IterationTiming:
        """This iteration's timing, once every bucket's collective has completed (after backward,
        which waits for them); starts the next iteration's. The next iteration's first bucket
        calls it when nobody did, so ``last`` is always the last finished iteration's."""
        intervals, self._intervals = self._intervals, []
        last_done = max((end for _, end in intervals), default=self._last_started)
        self.last = IterationTiming(
            self._select_s * 1e3, max(0.0, last_done - self._last_started) * 1e3,
            union_ms([tuple(i) for i in intervals]),
        )
        self._select_s, self._unfinished = 0.0, False
        return self.last
