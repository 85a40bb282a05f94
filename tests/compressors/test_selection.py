"""Exact top-k with the documented tie rule, against an independent numpy reference."""

import numpy as np
import pytest
import torch

from sparsetrain.compressors.selection import topk_indices


def reference(scores: np.ndarray, k: int) -> set[int]:
    """Sort by (score descending, index ascending) and take the first k."""
    order = np.lexsort((np.arange(scores.size), -scores))
    return set(order[:k].tolist())


CASES = {
    "random": lambda rng: rng.standard_normal(1000).astype(np.float32),
    "heavy_tailed": lambda rng: rng.standard_t(2, 1000).astype(np.float32),
    "ties_at_boundary": lambda rng: rng.integers(0, 5, 1000).astype(np.float32),
    "all_equal": lambda rng: np.full(1000, 0.25, np.float32),
    "all_zero": lambda rng: np.zeros(1000, np.float32),
    "extremes": lambda rng: np.array([3e38, 1e-45, 0.0, 1e-38, 3e38, 1.0] * 50, np.float32),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k", [1, 2, 7, 150, 299, 300])
def test_topk_matches_reference(case, k):
    rng = np.random.default_rng(k)
    scores = np.abs(CASES[case](rng))[:300]
    got = topk_indices(torch.from_numpy(scores), k)
    assert got.dtype == torch.long and got.numel() == k
    assert set(got.tolist()) == reference(scores, k)


def test_k_zero_and_k_above_d():
    scores = torch.rand(10)
    assert topk_indices(scores, 0).numel() == 0
    assert sorted(topk_indices(scores, 15).tolist()) == list(range(10))
