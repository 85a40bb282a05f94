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

Under :meth:`FlatModule.streaming` the same copy is made parameter by parameter, as soon as
backward has accumulated each gradient, so that stretches of the flat gradient can be exchanged
while backward goes on (:class:`~sparsetrain.train.gradients.OverlappedGradients`), or each
gradient is added into a buffer of the caller's instead (a compressor's residual).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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
    _on_ready: Callable[[int], None] | None = field(default=None, init=False, repr=False)
    _add_into: list[torch.Tensor] | None = field(default=None, init=False, repr=False)
    _hooked: bool = field(default=False, init=False, repr=False)

    @property
    def offsets(self) -> list[int]:
        """Where each parameter starts in the flat buffers, and (last) their length."""
        return torch.tensor([0] + [p.numel() for p in self.parameters]).cumsum(0).tolist()

    def release_grads(self) -> None:
        """Before a backward that starts a new gradient."""
        for param in self.parameters:
            param.grad = None

    def gather_grads(self) -> None:
        """After backward: every parameter's gradient into ``grad``, in one copy (done already
        under :meth:`streaming`)."""
        if self._on_ready is None:
            torch.cat([param.grad.reshape(-1) for param in self.parameters], out=self.grad)

    @contextlib.contextmanager
    def streaming(self, on_ready: Callable[[int], None], add_into: list[torch.Tensor] | None = None) -> Iterator[None]:
        """Within it, backward copies parameter ``i``'s gradient into its stretch of ``grad`` as
        soon as it has accumulated (a post-accumulate-grad hook), then calls ``on_ready(i)``;
        :meth:`gather_grads` then has nothing left to do. With ``add_into``, the gradient is
        added into ``add_into[i]`` (flat, its size) instead, and ``grad`` is left alone."""
        if not self._hooked:
            offsets = self.offsets
            for index, param in enumerate(self.parameters):
                param.register_post_accumulate_grad_hook(
                    lambda param, index=index, part=self.grad[offsets[index] : offsets[index + 1]]:
                    self._accumulated(index, param, part))
            self._hooked = True
        self._on_ready, self._add_into = on_ready, add_into
        try:
            yield
        finally:
            self._on_ready = self._add_into = None

    def _accumulated(self, index: int, param: nn.Parameter, part: torch.Tensor) -> None:
        if self._on_ready is not None:
            if self._add_into is None:
                part.copy_(param.grad.reshape(-1))
            else:
                self._add_into[index].add_(param.grad.reshape(-1))
            self._on_ready(index)


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
