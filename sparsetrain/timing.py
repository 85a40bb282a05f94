"""Wall-clock timing that is true on GPU: synchronise before reading the clock."""

from __future__ import annotations

import time

import torch

__all__ = ["Stopwatch"]


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
