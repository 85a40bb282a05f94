"""Dense: no compression, the reference every sparse path is measured and tested against."""

from __future__ import annotations

import torch

from sparsetrain.compressors.base import Compressor, Payload

__all__ = ["Dense"]


class Dense(Compressor):
    """Sends the whole local gradient; the exchange all-reduces it and divides by P.

    Like PyTorch's ``allreduce_hook``, this must give exactly plain data-parallel SGD. It keeps no
    residual. Traffic per worker per step is the ring all-reduce volume ``2 (P-1)/P * 4d`` bytes.
    """

    dense = True

    def __init__(self, dim: int, ratio: float = 1.0, scope: str = "bucket", **kwargs) -> None:
        """``scope=bucket`` (the default) all-reduces each bucket as backward fills it, as DDP does;
        ``model`` waits for the whole gradient. The aggregate is the same (see the trainer's
        :mod:`sparsetrain.train.gradients` for its float32 summation order)."""
        super().__init__(dim, ratio, scope=scope, **kwargs)

    def set_ratio(self, ratio: float) -> None:
        self.ratio, self.k = ratio, self.dim

    def compress(self, grad: torch.Tensor, step: int) -> Payload:
        return Payload(grad)
