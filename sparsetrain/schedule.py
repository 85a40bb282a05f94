"""The run's length, its learning-rate schedule (linear warm-up, then constant, cosine or step
decay) and its density schedule (``ratio_warmup``).

:func:`total_steps` turns ``train.epochs`` and ``train.steps`` into the number of steps.

``lr(step)`` for step 1..total, the step whose update it scales. Warm-up (Goyal et al. 2017,
"Accurate, Large Minibatch SGD", Sec. 2.2, gradual warm-up) rises linearly to the base rate over
its first ``warmup`` steps, ending exactly at it. After it:

- ``constant``: the base rate;
- ``cosine``: ``base * (1 + cos(pi * t)) / 2`` with t going from 0 at the first step after
  warm-up towards 1 at the last (Loshchilov & Hutter 2017, SGDR, without restarts), so no step
  has a rate of exactly 0;
- ``step``: ``base * gamma^m``, m the number of ``milestones`` (fractions of the run) passed.

``DensitySchedule(step)``: the ratio k/d of step 1..total: ``ratio_warmup[e]`` in epoch e (from 0)
while the list lasts, then ``ratio``. Sparsification papers train denser at first: the Gaussian-k
authors' optimizer (hclhkbu/GaussianK-SGD, ``distributed_optimizer.py``) uses 1/64 in epoch 0,
0.004 in epoch 1, then 0.001 (``ratio_warmup=[0.015625,0.004] ratio=0.001``); Deep Gradient
Compression (Lin et al. 2018, Sec. 3.3, "warm-up training") raises the sparsity exponentially,
75%, 93.75%, 98.4375%, 99.6%, then 99.9%, over the first four epochs
(``ratio_warmup=[0.25,0.0625,0.015625,0.004] ratio=0.001``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["DensitySchedule", "LRSchedule", "SCHEDULES", "total_steps"]

SCHEDULES = ("constant", "cosine", "step")


def total_steps(epochs: float | None, steps: int | None, steps_per_epoch: int) -> int:
    """The run's length: ``train.epochs`` passes over the data, capped at ``train.steps`` when set
    (either alone also works)."""
    lengths = [n for n in (round(epochs * steps_per_epoch) if epochs else None, steps) if n]
    if not lengths:
        raise ValueError("set train.epochs or train.steps")
    return max(1, min(lengths))


@dataclass(frozen=True)
class LRSchedule:
    base: float
    total: int
    kind: str = "constant"
    warmup: int = 0
    milestones: tuple[float, ...] = field(default=(0.5, 0.75))
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        if step <= self.warmup:
            return self.base * step / self.warmup
        if self.kind == "constant":
            return self.base
        if self.kind == "cosine":
            t = (step - self.warmup - 1) / max(1, self.total - self.warmup)
            return self.base * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "step":
            passed = sum(step > m * self.total for m in self.milestones)
            return self.base * self.gamma**passed
        raise ValueError(f"train.lr_schedule={self.kind!r} is not allowed: use one of {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class DensitySchedule:
    """The ratio k/d of a step: ``warmup[epoch]`` in the warm-up epochs, then ``target`` (see the
    module). A function of the step alone, so a resumed run continues it exactly."""

    target: float
    warmup: tuple[float, ...]
    steps_per_epoch: int

    def __call__(self, step: int) -> float:
        epoch = (step - 1) // self.steps_per_epoch
        return self.warmup[epoch] if epoch < len(self.warmup) else self.target
