"""One-pass threshold kernels: native on CPU where the optional extension built, torch otherwise.

Threshold selectors (Gaussian-k's loop, the top-k fast path's candidates) need, over the whole
d-sized buffer: its first two moments, and the entries whose magnitude passes a threshold. In
torch that is a compare pass writing a d-byte mask, a count and a compaction (``torch.nonzero``)
reading the mask again. The C extension ``_kernels`` (``_kernels.c``) reads the float32 buffer once
per call and writes only the indices; the buffer is split into one chunk per intra-op thread,
each run by a Python thread while the extension has released the GIL.

Both backends return the same indices for the same threshold (ascending, exact comparisons);
moments agree to float rounding (the native one sums float32 blocks of 256 into float64; torch
sums in float32). ``SPARSETRAIN_NATIVE_KERNELS=0`` forces the torch path.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch

from sparsetrain.compressors.buffers import magnitudes, scratch

try:
    from sparsetrain.compressors import _kernels
except ImportError:  # built without a C compiler: the torch path runs
    _kernels = None

__all__ = ["ENABLED", "native", "moments", "abs_above"]

ENABLED = _kernels is not None and os.environ.get("SPARSETRAIN_NATIVE_KERNELS", "1") != "0"
"""Whether the native kernels may run (tests switch it to compare the backends)."""

CHUNK_MIN = 1 << 18
"""Entries per thread below which splitting a call over threads costs more than it saves."""

_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def native(values: torch.Tensor) -> bool:
    """Whether ``values`` goes through the native kernels: a contiguous float32 CPU buffer."""
    return ENABLED and values.device.type == "cpu" and values.dtype == torch.float32 and values.is_contiguous()


def _chunks(n: int) -> list[tuple[int, int]]:
    parts = max(1, min(torch.get_num_threads(), n // CHUNK_MIN))
    edges = [n * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _parallel(fn, chunks: list[tuple[int, int]]) -> list:
    """``fn(i, begin, end)`` for every chunk i: inline for one, on the thread pool for several."""
    global _pool, _pool_size
    if len(chunks) == 1:
        return [fn(0, *chunks[0])]
    if _pool is None or _pool_size < len(chunks):
        _pool, _pool_size = ThreadPoolExecutor(len(chunks), thread_name_prefix="sparsetrain-kernels"), len(chunks)
    return [f.result() for f in [_pool.submit(fn, i, *chunk) for i, chunk in enumerate(chunks)]]


def moments(values: torch.Tensor) -> tuple[float, float]:
    """``(sum(values), sum(values**2))`` of a 1-D float buffer, in one pass when native."""
    if not native(values):
        return float(values.sum()), float(torch.dot(values, values))
    address = values.data_ptr()
    parts = _parallel(lambda _, begin, end: _kernels.moments(address + 4 * begin, end - begin), _chunks(values.numel()))
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def abs_above(values: torch.Tensor, threshold: float, cap: int, inclusive: bool = False) -> tuple[int, torch.Tensor | None]:
    """How many entries have ``|values| > threshold`` (``>=`` if ``inclusive``), and their indices
    (int64, ascending) when there are at most ``cap`` of them, else None. ``threshold`` is compared
    in float32, as torch compares a float32 tensor with a Python number."""
    if not native(values):
        # magnitudes() fills the shared score buffer; a caller's own scores (top-k's, >= 0) may be
        # that buffer, which |.| leaves as it is.
        compare = torch.ge if inclusive else torch.gt
        mask = compare(magnitudes(values), threshold, out=scratch("mask", values.numel(), torch.bool, values.device))
        count = int(torch.count_nonzero(mask))
        return count, torch.nonzero(mask).squeeze(1) if count <= cap else None
    chunks = _chunks(values.numel())
    cap = max(cap, 0)
    out = scratch("indices", len(chunks) * cap, torch.int64, values.device).view(len(chunks), cap)
    address, row = values.data_ptr(), out.stride(0) * 8

    def collect(index: int, begin: int, end: int) -> int:
        return _kernels.collect_abs_above(
            address + 4 * begin, end - begin, threshold, inclusive, begin, out.data_ptr() + row * index, cap
        )

    counts = _parallel(collect, chunks)
    total = sum(counts)
    if total > cap:
        return total, None
    # copied out of the scratch rows, which the next call overwrites
    return total, torch.cat([out[i, :c] for i, c in enumerate(counts)]) if len(chunks) > 1 else out[0, :total].clone()
