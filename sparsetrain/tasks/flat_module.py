"""Put an ``nn.Module``'s parameters and gradients into two flat buffers.

Compressors select over the whole model at once and the optimizer updates it in a few fused ops
(:class:`~sparsetrain.tasks.base.Task`), so a network's parameters are views of one float32
buffer, and its gradients end in another. A backward starts with no ``.grad``
(:meth:`FlatModule.release_grads`), so autograd hands each parameter the gradient it computed as
it is, and one ``torch.cat`` then writes them all into the flat gradient
(:meth:`FlatModule.gather_grads`). Zeroing the flat gradient and letting ``AccumulateGrad`` add
into views of it costs more: ResNet-18's backward takes about 4% longer on one CPU thread (an
in-place add of every gradient, against one copy). A second backward without a release adds to
the gradients, as autograd does (several logical workers' sum, in their order).
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
    parameters: list[nn.Parameter]
    """In the flat buffers' order."""

    def release_grads(self) -> None:
        """Before a backward that starts a new gradient."""
        for param in self.parameters:
            param.grad = None

    def gather_grads(self) -> None:
        """After backward: every parameter's gradient into ``grad``, in one copy."""
        torch.cat([param.grad.reshape(-1) for param in self.parameters], out=self.grad)


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
    return FlatModule(flat_params, flat_grad, sum(p.numel() for p in params if is_decayed(p)), ordered)
