"""The one collective helper sparsetrain needs beyond all-reduce: gather rows in rank order."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_rows"]

# Newer torch releases renamed all_gather_into_tensor (which now warns) to all_gather_single.
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def all_gather_rows(local: torch.Tensor, processes: int) -> torch.Tensor:
    """Concatenate every process's ``local`` (same shape everywhere) along dim 0, in rank order.

    One collective into a preallocated tensor; with a single process, ``local`` itself.
    """
    if processes == 1:
        return local
    gathered = torch.empty((processes * local.shape[0], *local.shape[1:]), dtype=local.dtype, device=local.device)
    _all_gather_single(gathered, local.contiguous())
    return gathered
