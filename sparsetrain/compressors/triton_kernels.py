"""The one-pass threshold scan on the GPU, in Triton: :func:`scan` for CUDA float32 buffers.

The same pass as the native CPU kernel (``_kernels.c``, :mod:`~sparsetrain.compressors.kernels`):
each program reads one block of ``a`` (and of ``g``, writing ``a = e + g`` back once), writes the
block's two partial moments, and compacts the entries whose magnitude passes the threshold into
the output rows at a slot it reserves with one atomic add per block. Atomics give the blocks'
slots in no fixed order, so the (at most ``cap``) collected entries are sorted by index after the
pass: the result is the ascending index set the CPU backends return, and the same values.

The one host synchronisation is reading the count (with the moments, in the same transfer): a
caller needs it to know whether the candidates are complete. Everything after the pass (the
exact top-k of the candidates, RegTop-k's reweighting, Gaussian-k's threshold loop on the
candidates) is torch on the device, as :mod:`~sparsetrain.compressors.selection` does it on CPU.

Moments: per-block float32 sums, added in float64 (the CPU kernel: blocks of 256 into float64);
equal to float rounding. Without a GPU the kernel runs under Triton's interpreter
(``TRITON_INTERPRET=1``, set before this module is imported) on CPU tensors; the tests do that.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from sparsetrain.compressors.buffers import scratch

__all__ = ["BLOCK", "scan_arrays"]

BLOCK = 1024
"""Entries per Triton program."""


@triton.jit
def _scan_kernel(values_ptr, add_ptr, n, threshold, out_indices_ptr, out_values_ptr, cap, counter_ptr,
                 partial_ptr, HAS_ADD: tl.constexpr, INCLUSIVE: tl.constexpr, MOMENTS: tl.constexpr,
                 BLOCK: tl.constexpr):
    block = tl.program_id(0)
    offsets = block.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_range = offsets < n
    a = tl.load(values_ptr + offsets, mask=in_range, other=0.0)
    if HAS_ADD:
        a += tl.load(add_ptr + offsets, mask=in_range, other=0.0)
        tl.store(values_ptr + offsets, a, mask=in_range)
    if MOMENTS:
        tl.store(partial_ptr + 2 * block, tl.sum(a, axis=0))
        tl.store(partial_ptr + 2 * block + 1, tl.sum(a * a, axis=0))
    if INCLUSIVE:
        passed = (tl.abs(a) >= threshold) & in_range
    else:
        passed = (tl.abs(a) > threshold) & in_range
    flags = passed.to(tl.int32)
    found = tl.sum(flags, axis=0)
    if found > 0:
        first = tl.atomic_add(counter_ptr, found)
        slots = first + tl.cumsum(flags, axis=0) - 1
        keep = passed & (slots < cap)
        tl.store(out_indices_ptr + slots, offsets, mask=keep)
        tl.store(out_values_ptr + slots, a, mask=keep)


def scan_arrays(values: torch.Tensor, threshold: float, cap: int, inclusive: bool, add: torch.Tensor | None,
                moments: bool) -> tuple[int, torch.Tensor | None, torch.Tensor | None, float | None, float | None]:
    """``values += add`` (when given), the entries with ``|values| > threshold`` (``>=`` if
    ``inclusive``, compared in float32) as ascending indices and their values when at most ``cap``
    (else None), and ``sum``/``sum of squares`` when ``moments``: ``(count, indices, values,
    total, total_sq)``. ``values`` (and ``add``) are contiguous float32 buffers on one device."""
    n = values.numel()
    blocks = triton.cdiv(n, BLOCK)
    counter = torch.zeros(1, dtype=torch.int32, device=values.device)
    partial = torch.empty(2 * blocks if moments else 1, dtype=torch.float32, device=values.device)
    out_indices = scratch("gpu_indices", max(cap, 1), torch.int64, values.device)
    out_values = scratch("gpu_values", max(cap, 1), torch.float32, values.device)
    threshold32 = float(np.float32(threshold))  # rounded to nearest here, as torch rounds it
    _scan_kernel[(blocks,)](
        values, values if add is None else add, n, threshold32, out_indices, out_values, cap, counter, partial,
        HAS_ADD=add is not None, INCLUSIVE=inclusive, MOMENTS=moments, BLOCK=BLOCK,
    )
    total = total_sq = None
    if moments:
        count, total, total_sq = torch.cat([counter.double(), partial.view(blocks, 2).double().sum(0)]).tolist()
        count = int(count)
    else:
        count = int(counter.item())
    if count > cap:
        return count, None, None, total, total_sq
    indices, order = out_indices[:count].sort()
    return count, indices, out_values[:count][order], total, total_sq
