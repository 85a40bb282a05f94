"""Gaussian-k: a threshold from a fitted Gaussian instead of a sort (Shi et al. 2019).

Shi, Chu, Cheung, See, "Understanding Top-k Sparsification in Distributed Deep Learning" (2019),
Alg. 2 (ALGORITHMS.md): the accumulated gradient's entries are roughly bell-shaped, so

    thr = mean(a) + Phi^{-1}(1 - rho/2) * std(a)           (two-sided: the test is on |a|)
    repeat at most 3 times:
        I = {j : |a_j| > thr}
        if |I| < 2k/3: thr *= 0.5  elif |I| > 4k/3: thr *= 1.5  else: stop

picks about k entries in O(d) work. The count varies from step to step and worker to worker.

Deviation (``refine=True``, the default): when |I| is still outside [2k/3, 4k/3] after the three
evaluations, sparsetrain sends exactly k entries instead, the exact top k (the fast path of
:func:`~sparsetrain.compressors.selection.topk_magnitude_indices`). This is common under error feedback: the
residual's tail is depleted by earlier selections, so the Gaussian fit's threshold passes too few
entries, half of it far too many, and the loop's x0.5 / x1.5 steps cannot land in range (seen in
results/selection/). ``refine=False`` is the paper's plain behaviour: the last evaluated set,
however far from k (possibly empty).

Cost: the moments come from the pass that does error feedback
(:class:`~sparsetrain.compressors.base.ScanningCompressor`), which also collects the ~2k entries
reaching a sampled threshold t_c. An evaluation at thr >= t_c is exact on those candidates alone;
one at thr < t_c passes at least all of them, so when they are already more than 4k/3 its outcome
("too many") is known without reading a. Only other evaluations read the whole buffer again.
No division by the standard deviation happens anywhere: a constant or all-zero gradient gives
``thr = mean`` and is handled by the loop (and by the fallback), never by NaN.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import torch

from sparsetrain.compressors import kernels
from sparsetrain.compressors.base import ScanningCompressor
from sparsetrain.compressors.kernels import Scan
from sparsetrain.compressors.selection import topk_magnitude_indices
from sparsetrain.errors import check_number

__all__ = ["GaussianK"]


def float32(x: float) -> float:
    """``x`` rounded to float32, the precision every threshold is compared in."""
    return torch.tensor(x, dtype=torch.float32).item()


class GaussianK(ScanningCompressor):
    fixed_count = False
    scan_moments = True

    def __init__(self, dim: int, ratio: float, refine: bool = True, max_evaluations: int = 3, **kwargs) -> None:
        """``refine``: send exactly k when the loop ends outside [2k/3, 4k/3] (a deviation; false is
        the paper's plain loop); ``max_evaluations``: threshold evaluations (3 in the paper)."""
        self.check({"refine": refine, "max_evaluations": max_evaluations})
        super().__init__(dim, ratio, **kwargs)
        self.refine = refine
        self.max_evaluations = max_evaluations
        self.z = NormalDist().inv_cdf(1 - ratio / 2)
        self.low, self.high = 2 * self.k / 3, 4 * self.k / 3

    @classmethod
    def check(cls, options: dict[str, Any]) -> None:
        check_number("compressor.max_evaluations", options["max_evaluations"], 1, integer=True)

    def select_scanned(self, acc: torch.Tensor, scan: Scan, step: int) -> torch.Tensor:
        """The threshold loop, given the scan's ``sum(acc)`` and ``sum(acc**2)`` and candidates.

        mean and std come from those two sums (E[a^2] - mean^2, one read pass instead of
        torch.std_mean's two; gradients have |mean| << std, so the cancellation is mild).
        """
        mean = scan.total / self.dim
        std = max(0.0, scan.total_sq / self.dim - mean * mean) ** 0.5
        threshold = mean + self.z * std
        cap = math.floor(self.high)
        candidate_magnitudes = None
        for _ in range(self.max_evaluations):
            evaluated = float32(threshold)
            if scan.indices is not None and evaluated >= scan.threshold:
                if candidate_magnitudes is None:
                    candidate_magnitudes = scan.values.abs()
                passing = candidate_magnitudes > evaluated
                count = int(torch.count_nonzero(passing))
                indices = scan.indices[passing] if count <= cap else None
            elif scan.threshold is not None and evaluated < scan.threshold and scan.count > cap:
                count, indices = scan.count, None  # at least: too many, known without a pass
            else:
                evaluation = kernels.scan(acc, evaluated, cap)
                count, indices = evaluation.count, evaluation.indices
            if count < self.low:
                threshold *= 0.5
            elif count > self.high:
                threshold *= 1.5
            else:
                return indices
        if self.refine:
            return topk_magnitude_indices(acc, self.k, scan=scan)
        if indices is None:
            count = kernels.scan(acc, evaluated, 0).count
            indices = kernels.scan(acc, evaluated, count).indices
        return indices
