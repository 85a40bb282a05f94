"""The policies that may refuse a step's update: non-finite aggregates and sudden jumps.

Both look only at the aggregate ``gbar``, which is identical on every process, so every process
takes the same decision without communicating. Each keeps its counters in ``state_dict`` (they
are part of a checkpoint) and reports them in ``metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from sparsetrain.compressors.base import Compressor

__all__ = ["NonfiniteGradient", "NonfiniteGuard", "RejectGuard"]


class NonfiniteGradient(FloatingPointError):
    """The aggregate (or, under ``skip``, the parameters) became non-finite: raised on every rank
    at the same step."""


class NonfiniteGuard:
    """``train.nonfinite``: what a NaN or Inf in the averaged gradient does.

    ``error`` (default) stops the job; the last checkpoint is kept. ``skip`` drops the step on all
    ranks (no update, counted in ``train/skipped_steps``) and zeroes the non-finite entries of every
    compressor's state (residuals, RegTop-k's memory) so they do not poison later steps. A skipped
    step is usually the symptom of parameters that have overflowed themselves (a learning rate far
    too high), which no skipping can repair: then the run stops with that cause.
    """

    def __init__(self, policy: str, compressors: Callable[[], list[Compressor]], params: torch.Tensor) -> None:
        """``compressors``: returns the compressors whose state to clean (one per hosted worker, or
        per bucket under ``compressor.scope=bucket``)."""
        self.policy = policy
        self.compressors = compressors
        self.params = params
        self.skipped_steps = 0

    def admits(self, gbar: torch.Tensor, step: int) -> bool:
        """Whether ``gbar`` is all finite: its sum is, unless an entry is NaN or Inf (or the sum of
        finite entries overflows, which the exact test then clears). One read, no d-sized mask:
        ``isfinite(gbar).all()`` costs ResNet-18 a step's 5% on one CPU thread."""
        if math.isfinite(float(gbar.sum())) or bool(torch.isfinite(gbar).all()):
            return True
        if self.policy == "error":
            raise NonfiniteGradient(
                f"the averaged gradient of step {step} holds NaN or Inf; stopped (train.nonfinite=error), "
                f"the last checkpoint is kept; train.nonfinite=skip drops such steps instead"
            )
        if not bool(torch.isfinite(self.params).all()):
            raise NonfiniteGradient(
                f"the parameters hold NaN or Inf at step {step}: the updates diverged, which skipping steps "
                f"cannot repair (train.nonfinite=skip); lower train.lr"
            )
        self.skipped_steps += 1
        for compressor in self.compressors():
            for value in compressor.state_dict().values():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    torch.nan_to_num_(value, nan=0.0, posinf=0.0, neginf=0.0)
        return False

    def metrics(self) -> dict[str, float]:
        return {"train/skipped_steps": float(self.skipped_steps)} if self.policy == "skip" else {}

    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped_steps = state["skipped_steps"]


class RejectGuard:
    """``train.reject_factor`` (off by default): skip the update when ``||gbar||^2`` exceeds that
    many times the last accepted one, as the RegTop-k authors' linear-regression script does
    (ALGORITHMS.md: not part of any algorithm)."""

    def __init__(self, factor: float | None) -> None:
        self.factor = factor
        self.rejected_steps = 0
        self.accepted_norm: float | None = None

    def admits(self, gbar: torch.Tensor) -> bool:
        if self.factor is None:
            return True
        norm = float(gbar.square().sum())
        if self.accepted_norm is not None and norm > self.factor * self.accepted_norm:
            self.rejected_steps += 1
            return False
        self.accepted_norm = norm
        return True

    def metrics(self) -> dict[str, float]:
        return {"train/rejected_steps": float(self.rejected_steps)} if self.factor is not None else {}

    def state_dict(self) -> dict[str, Any]:
        return {"rejected_steps": self.rejected_steps, "accepted_norm": self.accepted_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rejected_steps, self.accepted_norm = state["rejected_steps"], state["accepted_norm"]
