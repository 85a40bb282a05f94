"""SGD on one flat parameter buffer, with torch.optim.SGD's exact update rule.

The aggregate arrives as one flat buffer, so the update is a handful of fused tensor ops over the
whole model instead of a loop over parameter tensors; it also spares every worker the ~3 s import
of torch._dynamo that ``torch.optim.Optimizer.__init__`` triggers. Matches ``torch.optim.SGD``
(dampening 0): ``g += wd * p``; ``b = momentum * b + g`` (``b = g`` at the first step);
``g = g + momentum * b`` if nesterov else ``b``; ``p -= lr * g``. Weight decay applies to the
first ``decay_size`` entries only, so a task that lays out decayed tensors first (conv/linear
weights before norms and biases) excludes the rest without a mask.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["FlatSGD"]


class FlatSGD:
    """SGD over ``params`` (one flat buffer); :meth:`step` takes the gradient to apply."""

    def __init__(
        self,
        params: torch.Tensor,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        decay_size: int | None = None,
    ) -> None:
        if nesterov and momentum <= 0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.decay_size = params.numel() if decay_size is None else decay_size
        self.momentum_buffer: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        """Update ``params`` in place from ``grad``, which is overwritten: it ends holding the
        direction that was applied (weight decay and nesterov added into it, without a copy)."""
        if self.weight_decay:
            decayed = slice(0, self.decay_size)
            grad[decayed].add_(self.params[decayed], alpha=self.weight_decay)
        if self.momentum:
            if self.momentum_buffer is None:
                self.momentum_buffer = grad.clone()
            else:
                self.momentum_buffer.mul_(self.momentum).add_(grad)
            if self.nesterov:
                grad.add_(self.momentum_buffer, alpha=self.momentum)
            else:
                grad = self.momentum_buffer
        self.params.add_(grad, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum_buffer": self.momentum_buffer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr = state["lr"]
        buffer = state["momentum_buffer"]
        self.momentum_buffer = None if buffer is None else buffer.to(self.params.device).clone()
