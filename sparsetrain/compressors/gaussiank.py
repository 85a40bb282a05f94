"""Gaussian-k: a threshold from a fitted Gaussian instead of a sort (Shi et al. 2019).

Shi, Chu, Cheung, See, "Understanding Top-k Sparsification in Distributed Deep Learning" (2019),
Alg. 2 (ALGORITHMS.md): the accumulated gradient's entries are roughly bell-shaped, so

    thr = mean(a) + Phi^{-1}(1 - rho/2) * std(a)           (two-sided: the test is on |a|)
    repeat at most 3 times:
        I = {j : |a_j| > thr}
        if |I| < 2k/3: thr *= 0.5  elif |I| > 4k/3: thr *= 1.5  else: stop

picks about k entries in O(d) work. The count varies from step to step and worker to worker.

The arithmetic is the authors' (hclhkbu/GaussianK-SGD, ``compression.py``), so that selections
match theirs index for index: ``std`` is Bessel-corrected (``torch.std``); ``mean`` and ``std``
are float32 values that become Python floats before ``thr = mean - Phi^{-1}((1 - (1 - rho)) / 2)
* std`` is formed in float64; the loop's x0.5 / x1.5 act on that float64 value, and every
comparison rounds it to float32 (a float32 tensor against a Python float). After 3 evaluations
the last evaluated set is sent, however far from k (possibly empty): no fallback. Not matched:
``Phi^{-1}`` is Python's ``statistics.NormalDist`` where they call scipy's ``norm.ppf``, and the
sums behind mean and std are exact float64 sums, where ``torch.mean`` / ``torch.std`` round
theirs differently; either changes a float32 threshold only in its last bit, and rarely.

Deviation, off by default (``exact_k=true``): when |I| is still outside [2k/3, 4k/3] after the
evaluations, send exactly k entries instead, the exact top k (the fast path of
:func:`~sparsetrain.compressors.selection.topk_magnitude_indices`). Under error feedback the
plain loop often ends out of range (the residual's tail is depleted by earlier selections, so the
fit's threshold passes too few entries, half of it far too many); with the fallback on, such a
run mostly sends Top-k. Each step logs how many evaluations ran and whether the count landed in
range (``comm/threshold_evaluations``, ``comm/in_range``: :meth:`GaussianK.stats`).

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
    stat_names = ("comm/threshold_evaluations", "comm/in_range")

    def __init__(self, dim: int, ratio: float, exact_k: bool = False, max_evaluations: int = 3, **kwargs) -> None:
        """``exact_k``: send exactly k when the loop ends outside [2k/3, 4k/3] (a deviation from the
        paper, off by default); ``max_evaluations``: threshold evaluations (3 in the paper)."""
        self.check({"exact_k": exact_k, "max_evaluations": max_evaluations})
        super().__init__(dim, ratio, **kwargs)
        self.exact_k = exact_k
        self.max_evaluations = max_evaluations
        self.evaluations, self.in_range = 0, False

    def set_ratio(self, ratio: float) -> None:
        super().set_ratio(ratio)
        self.z = -NormalDist().inv_cdf((1 - (1 - ratio)) / 2)  # the authors' p-value arithmetic
        self.low, self.high = 2 * self.k / 3, 4 * self.k / 3

    @classmethod
    def check(cls, options: dict[str, Any]) -> None:
        super().check(options)
        check_number("compressor.max_evaluations", options["max_evaluations"], 1, integer=True)

    def stats(self) -> tuple[float, ...]:
        """The last selection's threshold evaluations and whether its count landed in [2k/3, 4k/3]."""
        return float(self.evaluations), float(self.in_range)

    def select_scanned(self, acc: torch.Tensor, scan: Scan, step: int) -> torch.Tensor:
        """The threshold loop, given the scan's ``sum(acc)`` and ``sum(acc**2)`` and candidates.

        mean and the Bessel-corrected std come from those two float64 sums (sum(a^2) - d mean^2,
        one read pass instead of torch.std_mean's two; gradients have |mean| << std, so the
        cancellation is mild), each rounded to float32 as the authors' tensors are.
        """
        mean = scan.total / self.dim
        variance = max(0.0, scan.total_sq - self.dim * mean * mean) / max(1, self.dim - 1)
        threshold = float32(mean) + self.z * float32(variance**0.5)
        cap = math.floor(self.high)
        candidate_magnitudes = None
        self.in_range = False
        for evaluation in range(1, self.max_evaluations + 1):
            self.evaluations = evaluation
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
                self.in_range = True
                return indices
        if self.exact_k:
            return topk_magnitude_indices(acc, self.k, scan=scan)
        if indices is None:
            count = kernels.scan(acc, evaluated, 0).count
            indices = kernels.scan(acc, evaluated, count).indices
        return indices
