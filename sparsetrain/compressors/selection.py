"""Exact top-k index selection with a documented tie rule, and a fast path for large d.

``torch.topk`` does not specify which of several equal values it returns. sparsetrain's rule:
the k entries of largest score; among entries equal to the k-th largest score, the lowest indices
win. Every path here returns exactly that set.

Fast path (:func:`topk_magnitude_indices` for large d and small k/d, on CPU): a threshold from
a strided sample of |a|, the candidates above it in index order
(:func:`~sparsetrain.compressors.kernels.abs_above`: one native pass, or a compare and a
compaction in torch), and the exact top-k among the ~2k candidates' scores. If fewer than k
candidates reach the threshold, the plain exact path runs instead, so the result never depends on
the sample. Temporaries: the sample and the candidates (O(k)); no d-sized buffer with the native
kernels; the torch path and the exact path use the reusable score buffer and a d-byte mask
(:func:`~sparsetrain.compressors.buffers.scratch`).
"""

from __future__ import annotations

import math

import torch

from sparsetrain.compressors import kernels
from sparsetrain.compressors.buffers import magnitudes

__all__ = ["topk_indices", "topk_magnitude_indices", "exact_topk_indices"]

SAMPLE_SIZE = 1 << 16
"""Entries in the strided sample that sets the candidate threshold."""
FAST_PATH_MIN_D = 1 << 18
"""Below this size (or above k/d = 1/16) the plain exact path is as fast."""
FAST_PATH_DEVICES = ("cpu",)
"""Where the sampled-threshold path wins. On an H100, ``torch.topk`` (radix select) takes 0.33 ms
for d = 11.17M and beats it (0.65 ms, latency-bound by its host synchronisations); see
results/selection/."""


SORTED_BELOW = 2048
"""k below which a sorted ``torch.topk`` is cheaper than an unsorted one plus the 2-element check
(CPU, this repository's machine: 42 vs 87 us at k=60; 2.7 vs 1.2 ms at k=11k)."""


def exact_topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The plain path: ``torch.topk`` of k+1, with a tie-breaking pass over all entries only when
    the k-th and (k+1)-th largest are equal. Indices int64, distinct, in no particular order."""
    n = scores.numel()
    if k >= n:
        return torch.arange(n, device=scores.device)
    if k <= 0:
        return torch.empty(0, dtype=torch.long, device=scores.device)
    small = k < SORTED_BELOW
    top_values, top_indices = torch.topk(scores, k + 1, sorted=small)
    if small:
        kth, after = top_values[k - 1], top_values[k]
    else:
        (after, kth), (position, _) = torch.topk(top_values, 2, largest=False)
    if bool(kth > after):
        if not small:  # drop the (k+1)-th largest: move the last entry into its place
            top_indices[position] = top_indices[k]
        return top_indices[:k]
    above = torch.nonzero(scores > kth).squeeze(1)
    ties = torch.nonzero(scores == kth).squeeze(1)[: k - above.numel()]
    return torch.cat([above, ties])


def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (int64, distinct, no particular order) of the ``k`` largest ``scores`` (1-D,
    non-negative, NaN-free); among scores equal to the k-th largest, lower indices win."""
    return topk_magnitude_indices(scores, k)


def topk_magnitude_indices(
    values: torch.Tensor, k: int, scaled: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """:func:`topk_indices` of the scores ``|values|``, where ``scaled = (indices, factors)``
    (distinct indices, factors in [0, 1]) first multiplies ``|values[indices]|`` by ``factors``
    (RegTop-k's reweighting of last step's entries).

    The fast path never builds the d-sized scores. Scores are at most ``|values|``, so every entry
    whose score reaches the sample threshold t is among the candidates ``|values| >= t``; their
    scores are computed on the candidates alone, and when at least k of them reach t, nothing
    outside (score < t) can rank or tie with the k-th. Otherwise (or for factors above 1) the
    exact path runs on the materialised scores.
    """
    n = values.numel()
    fast = n >= FAST_PATH_MIN_D and 16 * k <= n and values.device.type in FAST_PATH_DEVICES
    if fast and scaled is not None and scaled[1].numel():
        fast = float(scaled[1].max()) <= 1.0
    if fast:
        stride = n // SAMPLE_SIZE
        sample = values[::stride].abs()
        # The sample's q-th largest: about 2k entries of the whole buffer are expected above it.
        q = min(sample.numel(), math.ceil(2 * k * sample.numel() / n) + 8)
        threshold = float(torch.topk(sample, q, sorted=False).values.min())
        count, candidates = kernels.abs_above(values, threshold, cap=4 * k, inclusive=True)
        if count >= k:
            if candidates is None:  # far more than the ~2k expected: the sample was unlucky
                _, candidates = kernels.abs_above(values, threshold, cap=count, inclusive=True)
            scores = values[candidates].abs_()
            if scaled is not None:
                indices, factors = scaled
                position = torch.searchsorted(candidates, indices).clamp_(max=candidates.numel() - 1)
                hit = candidates[position] == indices
                scores[position[hit]] *= factors[hit]
            if int(torch.count_nonzero(scores >= threshold)) >= k:
                # candidates are in index order, so the tie rule carries over
                return candidates[exact_topk_indices(scores, k)]
    scores = magnitudes(values)
    if scaled is not None:
        scores[scaled[0]] *= scaled[1]
    return exact_topk_indices(scores, k)
