"""Reusable d-sized scratch buffers for the selectors.

Large temporaries are reused rather than allocated per step: a fresh 45 MB tensor costs more in
page faults (~20 ms on a 2-core CPU) than the pass that fills it (~3 ms).
"""

from __future__ import annotations

import torch

__all__ = ["scratch", "magnitudes"]

_SCRATCH: dict[tuple, torch.Tensor] = {}


def scratch(name: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A reusable 1-D buffer, one per (name, size, dtype, device) in this process.

    Compressors of the logical workers a process hosts run one after another, so they share it.
    Its contents are garbage between calls.
    """
    key = (name, numel, dtype, device)
    buffer = _SCRATCH.get(key)
    if buffer is None:
        buffer = _SCRATCH[key] = torch.empty(numel, dtype=dtype, device=device)
    return buffer


def magnitudes(values: torch.Tensor) -> torch.Tensor:
    """``|values|`` written into the process's reusable score buffer."""
    return torch.abs(values, out=scratch("scores", values.numel(), values.dtype, values.device))
