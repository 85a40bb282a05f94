"""One-pass threshold scan: native on CPU where the optional extension built, torch otherwise.

Threshold selectors (Gaussian-k's loop, DGC's back-off, the top-k fast path's candidates) need,
over the whole d-sized accumulated gradient ``a = e + g``: its first two moments, and the entries
whose magnitude passes a threshold. In torch that is the error-feedback add, a compare pass
writing a d-byte mask, a count and a compaction (``torch.nonzero``) reading the mask again, and
two reductions.
:func:`scan` does it in one pass: the C extension ``_kernels`` (``_kernels.c``) reads the float32
buffer (and ``g``, which it adds in place) once and writes only the entries it collects (index
and value); the buffer is split into one part per intra-op thread, run on torch's own OpenMP
threads (``_kernels.c`` says why not threads of its own).

Both backends return the same count and indices for the same threshold (ascending, exact
comparisons) and leave the same ``a``; moments agree to float rounding (the native one sums float32
blocks of 256 into float64; torch sums in float32). CUDA buffers go through the same pass in Triton
(:mod:`~sparsetrain.compressors.triton_kernels`) where triton is installed, torch otherwise.
``SPARSETRAIN_NATIVE_KERNELS=0`` forces the torch path on both.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from types import ModuleType

import torch

from sparsetrain.compressors.buffers import magnitudes, scratch

try:
    from sparsetrain.compressors import _kernels
except ImportError:  # built without a C compiler: the torch path runs
    _kernels = None

__all__ = ["ENABLED", "TRITON_ON_CPU", "Scan", "gpu", "native", "scan"]

ENABLED = os.environ.get("SPARSETRAIN_NATIVE_KERNELS", "1") != "0"
"""Whether the native kernels (C on CPU, Triton on GPU) may run (tests switch it to compare the backends)."""

TRITON_ON_CPU = False
"""Tests set it, with ``TRITON_INTERPRET=1``, to run the Triton kernels on CPU buffers."""

CHUNK_MIN = 1 << 18
"""Entries per thread below which splitting a scan over threads costs more than it saves."""


@dataclass
class Scan:
    """What one pass over a buffer ``a`` found.

    ``count`` entries have ``|a| > threshold`` (``>=`` if ``inclusive``); ``indices`` are they,
    ascending int64, and ``values`` their ``a[indices]`` as the pass saw them, or both None when
    there are more than the cap the pass was given. A ``threshold`` of None means the pass
    collected nothing (count 0). ``total`` and ``total_sq`` are ``sum(a)`` and ``sum(a**2)`` when
    the pass was asked for moments, else None.
    """

    threshold: float | None
    inclusive: bool
    count: int
    indices: torch.Tensor | None
    values: torch.Tensor | None
    total: float | None = None
    total_sq: float | None = None


def _flat_float32(values: torch.Tensor) -> bool:
    return values.dtype == torch.float32 and values.is_contiguous()


def native(values: torch.Tensor) -> bool:
    """Whether ``values`` goes through the native kernels: a contiguous float32 CPU buffer."""
    return ENABLED and _kernels is not None and values.device.type == "cpu" and _flat_float32(values)


@functools.cache
def _triton() -> ModuleType | None:
    """:mod:`~sparsetrain.compressors.triton_kernels`, imported on first use (triton is slow to
    import and only GPU runs need it), or None where triton is not installed."""
    try:
        from sparsetrain.compressors import triton_kernels
    except ImportError:
        return None
    return triton_kernels


def gpu(values: torch.Tensor) -> bool:
    """Whether ``values`` goes through the Triton kernels: a contiguous float32 CUDA buffer (any
    device under :data:`TRITON_ON_CPU`), with triton installed."""
    on_device = values.device.type == "cuda" or TRITON_ON_CPU
    return ENABLED and on_device and _flat_float32(values) and _triton() is not None


def _parts(n: int) -> int:
    """How many parts a native scan of n entries is split into, one per intra-op thread."""
    return max(1, min(torch.get_num_threads(), n // CHUNK_MIN, 256))


def scan(
    values: torch.Tensor,
    threshold: float,
    cap: int,
    *,
    inclusive: bool = False,
    add: torch.Tensor | None = None,
    moments: bool = False,
) -> Scan:
    """One pass over the 1-D float buffer ``values``: first ``values += add`` in place when
    ``add`` is given (error feedback), then the entries with ``|values| > threshold`` (``>=`` if
    ``inclusive``), collected when at most ``cap``, and the moments when asked for.
    ``threshold`` is compared in float32, as torch compares a float32 tensor with a Python number.
    """
    cap = max(cap, 0)
    if gpu(values) and (add is None or gpu(add)):
        count, indices, found, total, total_sq = _triton().scan_arrays(values, threshold, cap, inclusive, add, moments)
        return Scan(threshold, inclusive, count, indices, found, total, total_sq)
    if not (native(values) and (add is None or native(add))):
        if add is not None:
            values.add_(add)
        # magnitudes() fills the shared score buffer; a caller's own scores (top-k's, >= 0) may be
        # that buffer, which |.| leaves as it is.
        compare = torch.ge if inclusive else torch.gt
        mask = compare(magnitudes(values), threshold, out=scratch("mask", values.numel(), torch.bool, values.device))
        count = int(torch.count_nonzero(mask))
        indices = torch.nonzero(mask).squeeze(1) if count <= cap else None
        found = None if indices is None else values[indices]
        if not moments:
            return Scan(threshold, inclusive, count, indices, found)
        return Scan(threshold, inclusive, count, indices, found, float(values.sum()), float(torch.dot(values, values)))
    parts = _parts(values.numel())
    out = scratch("indices", parts * cap, torch.int64, values.device).view(parts, cap)
    out_values = scratch("values", parts * cap, torch.float32, values.device).view(parts, cap)
    counts, total, total_sq = _kernels.scan(
        values.data_ptr(), 0 if add is None else add.data_ptr(), values.numel(), threshold, inclusive,
        out.data_ptr(), out_values.data_ptr(), cap, moments, parts,
    )
    count = sum(counts)
    indices = found = None
    if count <= cap:  # copied out of the scratch rows, which the next call overwrites
        indices = torch.cat([out[i, :c] for i, c in enumerate(counts)])
        found = torch.cat([out_values[i, :c] for i, c in enumerate(counts)])
    if not moments:
        return Scan(threshold, inclusive, count, indices, found)
    return Scan(threshold, inclusive, count, indices, found, total, total_sq)
