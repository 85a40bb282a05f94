"""Put an ``nn.Module``'s parameters and gradients into two flat buffers.

Compressors select over the whole model at once and the optimizer updates it in a few fused ops
(:class:`~sparsetrain.tasks.base.Task`), so a network's parameters must be views of one float32
buffer and their ``.grad`` views of another. Autograd then writes every gradient straight into
the flat gradient: with ``.grad`` already set, ``AccumulateGrad`` adds into it in place (the same
trick as DDP's ``gradient_as_bucket_view``), so there is no per-step copy or Python loop over
parameters. Zero the flat gradient before each backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["FlatModule", "flatten_module", "is_decayed"]


def is_decayed(param: nn.Parameter) -> bool:
    """Weight decay goes on conv and linear weights (>= 2 dimensions), not on norms' scales and
    shifts or on biases (1 dimension): "no bias decay", He et al. 2019, "Bag of Tricks for Image
    Classification with Convolutional Neural Networks", Sec. 3.1."""
    return param.ndim > 1


@dataclass
class FlatModule:
    params: torch.Tensor
    grad: torch.Tensor
    decay_size: int
    """The parameters that :func:`is_decayed` picks come first: ``params[:decay_size]``."""


@torch.no_grad()
def flatten_module(module: nn.Module) -> FlatModule:
    """Re-home ``module``'s parameters (kept values) in one flat buffer, decayed ones first."""
    params = list(module.parameters())
    ordered = [p for p in params if is_decayed(p)] + [p for p in params if not is_decayed(p)]
    total = sum(p.numel() for p in ordered)
    device = params[0].device
    flat_params = torch.empty(total, dtype=torch.float32, device=device)
    flat_grad = torch.zeros(total, dtype=torch.float32, device=device)
    offset = 0
    for param in ordered:
        size = param.numel()
        flat_params[offset : offset + size].copy_(param.reshape(-1))
        param.data = flat_params[offset : offset + size].view_as(param)
        param.grad = flat_grad[offset : offset + size].view_as(param)
        offset += size
    return FlatModule(flat_params, flat_grad, sum(p.numel() for p in params if is_decayed(p)))
