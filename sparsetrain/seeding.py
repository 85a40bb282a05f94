"""Random streams that depend on (seed, worker[, step]) alone, never on the layout.

Logical worker n draws from generators seeded by these values whichever process hosts it, so a
run is reproducible across layouts and a restarted step redraws exactly what it drew before.
"""

from __future__ import annotations

import torch

__all__ = ["worker_seed", "step_generator"]


def worker_seed(seed: int, worker: int) -> int:
    """The seed of worker ``worker``'s own stream (a linear-regression shard, say)."""
    return seed * 1_000_003 + worker


def step_generator(seed: int, worker: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for worker ``worker``'s draws at step ``step`` (Random-k's indices, CIFAR-10's
    crops and flips)."""
    return torch.Generator(device=device).manual_seed((worker_seed(seed, worker) * 1_000_000_007 + step) % 2**63)
