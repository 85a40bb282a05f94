"""Exact top-k index selection with a documented tie rule, and a fast path for large d.

``torch.topk`` does not specify which of several equal values it returns. sparsetrain's rule:
the k entries of largest score; among entries equal to the k-th largest score, the lowest indices
win. Every path here returns exactly that set.

Fast path (:func:`topk_magnitude_indices` for large d and small k/d, on CPU and Triton GPUs): a threshold from
a strided sample of |a| that about 2k entries reach, the candidates reaching it in index order
(:func:`candidate_scan`: one :func:`~sparsetrain.compressors.kernels.scan` pass, which can also
do error feedback's ``a = e + g`` and Gaussian-k's moments in the same read), and the exact top-k
among the candidates' scores. If fewer than k candidates reach the threshold, scans at lower
thresholds and then the plain exact path run instead, so the result never depends on the sample.
Temporaries: the sample and the candidates' indices and values (O(k)); no d-sized buffer with the
native kernels; the torch path and the exact path use the reusable score buffer and a d-byte mask
(:func:`~sparsetrain.compressors.buffers.scratch`).
"""

from __future__ import annotations

import math

import torch

from sparsetrain.compressors import kernels
from sparsetrain.compressors.buffers import magnitudes
from sparsetrain.compressors.kernels import Scan

__all__ = ["candidate_scan", "topk_magnitude_indices", "exact_topk_indices"]

SAMPLE_SIZE = 1 << 15
"""Entries in the strided sample that sets the candidate threshold."""
FAST_PATH_MIN_D = 1 << 18
"""Below this size (or above k/d = 1/16) the plain exact path is as fast."""


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


def fast_path(values: torch.Tensor, k: int) -> bool:
    """Whether the sampled-threshold path applies to top-k of ``values``: on CPU, and on a GPU
    where the Triton scan runs (torch's compare, count and compaction there cost more than
    ``torch.topk``'s radix select: 0.65 against 0.33 ms on an H100 at d = 11.17M, before the
    Triton scan; results/selection/)."""
    n = values.numel()
    return n >= FAST_PATH_MIN_D and 16 * k <= n and (values.device.type == "cpu" or kernels.gpu(values))


def candidate_scan(
    values: torch.Tensor,
    k: int,
    *,
    add: torch.Tensor | None = None,
    moments: bool = False,
    expected: int | None = None,
) -> Scan:
    """``values += add`` (when given) and, in the same pass where :func:`fast_path` applies, the
    candidates for the top k of ``|values|``: every entry reaching a threshold that about
    ``expected`` (default 2k) entries reach, estimated from a strided sample of ``values + add``.
    Elsewhere the scan collects nothing (``threshold`` None). With ``moments``, also ``sum`` and
    ``sum of squares``.
    """
    if not fast_path(values, k):
        if add is not None:
            values.add_(add)
        if not moments:
            return Scan(None, True, 0, None, None)
        return Scan(None, True, 0, None, None, float(values.sum()), float(torch.dot(values, values)))
    n = values.numel()
    expected = 2 * k if expected is None else expected
    stride = n // SAMPLE_SIZE
    sample = values[::stride].abs() if add is None else (values[::stride] + add[::stride]).abs_()
    # The sample's q-th largest: about `expected` entries of the whole buffer reach it.
    q = min(sample.numel(), math.ceil(expected * sample.numel() / n) + 8)
    threshold = float(torch.topk(sample, q, sorted=False).values.min())
    return kernels.scan(values, threshold, 2 * expected, inclusive=True, add=add, moments=moments)


def topk_magnitude_indices(
    values: torch.Tensor,
    k: int,
    scaled: tuple[torch.Tensor, torch.Tensor] | None = None,
    scan: Scan | None = None,
) -> torch.Tensor:
    """Indices (int64, distinct, no particular order) of the ``k`` largest scores ``|values|``
    (among scores equal to the k-th largest, lower indices win), where ``scaled = (indices, factors)``
    (distinct indices, factors >= 0) first multiplies ``|values[indices]|`` by ``factors``
    (RegTop-k's reweighting of last step's entries). ``scan``, a :func:`candidate_scan` of
    ``values``, saves the fast path its own pass.

    The fast path takes the candidates' scores from the values the scan collected, and reweights
    only the scaled entries that are candidates: those whose ``|values|`` reaches the scan's
    threshold t, found by one gather of ``values[indices]`` and placed among the (ascending)
    candidates by binary search. Factors of at most 1 only lower scores, so every entry whose
    score reaches t is still a candidate; larger factors take the exact path on the
    materialised scores.
    """
    if scaled is not None and not scaled[0].numel():
        scaled = None
    if scaled is None or float(scaled[1].max()) <= 1.0:
        found = _topk_of_candidates(values, k, scaled, scan)
        if found is not None:
            return found
    scores = magnitudes(values)
    if scaled is not None:
        scores[scaled[0]] *= scaled[1]
    return exact_topk_indices(scores, k)


def _topk_of_candidates(
    values: torch.Tensor, k: int, scaled: tuple[torch.Tensor, torch.Tensor] | None, scan: Scan | None
) -> torch.Tensor | None:
    """The fast path of :func:`topk_magnitude_indices`, or None where it does not apply.

    Exact when at least k candidates' scores reach the scan's threshold t: the k-th largest score
    then reaches t, and nothing outside (below t, or at most t for a strict scan) can rank or tie
    with it. Where the candidates fall short (an unlucky sample, or RegTop-k's factors pushing
    their scores under t), new scans aim at 8k and then 32k candidates: a pass is far cheaper
    than a top-k over all d scores. Where more than d/16 reach t (ties at t), None at once.
    """
    scaled_magnitudes = None  # |values| of the scaled entries, read once a scan has candidates
    for expected in (None, 8 * k, 32 * k):
        if scan is None and fast_path(values, k) and (expected is None or expected < values.numel() // 16):
            scan = candidate_scan(values, k, expected=expected)
        if scan is None or scan.threshold is None:
            return None
        if scan.count >= k:
            if scan.indices is None:  # far more than expected: the sample was unlucky, or ties
                if 16 * scan.count > values.numel():
                    return None
                scan = kernels.scan(values, scan.threshold, scan.count, inclusive=scan.inclusive)
            scores = scan.values.abs()
            t = scan.threshold
            if scaled is not None:
                if scaled_magnitudes is None:
                    scaled_magnitudes = values[scaled[0]].abs_()
                inside = scaled_magnitudes >= t if scan.inclusive else scaled_magnitudes > t
                scores[torch.searchsorted(scan.indices, scaled[0][inside])] *= scaled[1][inside]
            if int(torch.count_nonzero(scores >= t if scan.inclusive else scores > t)) >= k:
                # candidates are in index order, so the tie rule carries over
                return scan.indices[exact_topk_indices(scores, k)]
        scan = None
    return None
