"""Random-k: k entries drawn uniformly without replacement, a baseline (ALGORITHMS.md)."""

from __future__ import annotations

import torch

from sparsetrain.compressors.base import SparseCompressor
from sparsetrain.seeding import step_generator

__all__ = ["RandomK"]


class RandomK(SparseCompressor):
    """Sends ``a`` at k indices drawn uniformly without replacement, with error feedback.

    The draw is seeded by (seed, worker, step) alone, so runs are reproducible and independent of
    the layout. For k << d the indices come from O(k log k) work instead of an O(d) permutation:
    i.i.d. draws with duplicates rejected in draw order (the first k distinct values of an i.i.d.
    uniform sequence are a uniform k-subset).
    """

    def select(self, acc: torch.Tensor, step: int) -> torch.Tensor:
        gen = step_generator(self.seed, self.worker, step, self.device)
        if 4 * self.k > self.dim:
            return torch.randperm(self.dim, generator=gen, device=self.device)[: self.k]
        draws = self.k + self.k // 4 + 16
        while True:
            candidates = torch.randint(self.dim, (draws,), generator=gen, device=self.device)
            values, inverse = torch.unique(candidates, return_inverse=True)
            if values.numel() >= self.k:
                break
            draws *= 2
        positions = torch.arange(draws, device=self.device)
        first = torch.full_like(values, draws).scatter_reduce_(0, inverse, positions, "amin")
        return candidates[torch.sort(first).values[: self.k]]
