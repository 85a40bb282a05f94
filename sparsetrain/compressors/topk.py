"""Top-k sparsification with error feedback (Aji & Heafield 2017; Stich et al. 2018)."""

from __future__ import annotations

import torch

from sparsetrain.compressors.base import ScanningCompressor
from sparsetrain.compressors.kernels import Scan
from sparsetrain.compressors.selection import topk_magnitude_indices

__all__ = ["TopK"]


class TopK(ScanningCompressor):
    """Sends the k entries of largest magnitude of ``a = g + e``: ``I = argtop_k |a|``.

    Exactly k entries every step (8k payload bytes: fp32 value + int32 index). Ties at the k-th
    magnitude go to the lowest index (:func:`~sparsetrain.compressors.selection.topk_magnitude_indices`).
    """

    def select_scanned(self, acc: torch.Tensor, scan: Scan, step: int) -> torch.Tensor:
        return topk_magnitude_indices(acc, self.k, scan=scan)
