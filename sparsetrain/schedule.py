"""The run's length and its learning-rate schedule: linear warm-up, then constant, cosine or step decay.

:func:`total_steps` turns ``train.epochs`` and ``train.steps`` into the number of steps.

``lr(step)`` for step 1..total, the step whose update it scales. Warm-up (Goyal et al. 2017,
"Accurate, Large Minibatch SGD", Sec. 2.2, gradual warm-up) rises linearly to the base rate over
its first ``warmup`` steps, ending exactly at it. After it:

- ``constant``: the base rate;
- ``cosine``: ``base * (1 + cos(pi * t)) / 2`` with t going from 0 at the first step after
  warm-up towards 1 at the last (Loshchilov & Hutter 2017, SGDR, without restarts), so no step
  has a rate of exactly 0;
- ``step``: ``base * gamma^m``, m the number of ``milestones`` (fractions of the run) passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["LRSchedule", "SCHEDULES", "total_steps"]

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
