"""The collectives the exchange issues, as futures: all-gather of rows in rank order, all-reduce.

With a single process nothing is sent and the futures are already complete, so callers need no
special case. ``group`` is a process group (None: the default one). A callback chained on these
futures must read the future it gets (``future.value()``): that is how a collective's error (a
peer that died) reaches the caller instead of a buffer of garbage.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.futures import Future

__all__ = ["all_gather_rows", "all_gather_rows_async", "all_reduce_async", "completed"]

# Newer torch releases renamed all_gather_into_tensor (which now warns) to all_gather_single.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def completed(value: Any) -> Future:
    """A future that already holds ``value``."""
    future: Future = Future()
    future.set_result(value)
    return future


def all_gather_rows_async(local: torch.Tensor, processes: int, group: Any = None) -> Future:
    """Every process's ``local`` (same shape everywhere) concatenated along dim 0, in rank order."""
    if processes == 1:
        return completed(local)
    gathered = torch.empty((processes * local.shape[0], *local.shape[1:]), dtype=local.dtype, device=local.device)
    work = _all_gather_single(gathered, local.contiguous(), group=group, async_op=True)
    return work.get_future().then(lambda done: _after(done, gathered))


def all_gather_rows(local: torch.Tensor, processes: int, group: Any = None) -> torch.Tensor:
    """:func:`all_gather_rows_async`, waited for."""
    return all_gather_rows_async(local, processes, group).wait()


def all_reduce_async(tensor: torch.Tensor, processes: int, group: Any = None) -> Future:
    """``tensor`` summed over processes, in place."""
    if processes == 1:
        return completed(tensor)
    work = dist.all_reduce(tensor, group=group, async_op=True)
    return work.get_future().then(lambda done: _after(done, tensor))


def _after(done: Future, result: torch.Tensor) -> torch.Tensor:
    """``result`` once ``done`` has completed; its error (a peer that died) is raised, not lost."""
    done.value()
    return result
