"""Exact top-k index selection with a documented tie rule.

``torch.topk`` does not specify which of several equal values it returns. sparsetrain's rule:
the k entries of largest score; among entries equal to the k-th largest score, the lowest indices
win. Only the boundary matters, so the k+1 largest are taken and the tie-breaking pass over all d
entries runs only when the k-th and (k+1)-th largest are equal.
"""

from __future__ import annotations

import torch

__all__ = ["topk_indices"]


def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (int64, distinct, in no particular order) of the ``k`` largest ``scores``.

    ``scores`` is 1-D and NaN-free; among scores equal to the k-th largest, lower indices win.
    """
    n = scores.numel()
    if k >= n:
        return torch.arange(n, device=scores.device)
    if k <= 0:
        return torch.empty(0, dtype=torch.long, device=scores.device)
    top_values, top_indices = torch.topk(scores, k + 1, sorted=True)
    if bool(top_values[k - 1] > top_values[k]):
        return top_indices[:k]
    threshold = top_values[k - 1]
    above = torch.nonzero(scores > threshold).squeeze(1)
    ties = torch.nonzero(scores == threshold).squeeze(1)[: k - above.numel()]
    return torch.cat([above, ties])
