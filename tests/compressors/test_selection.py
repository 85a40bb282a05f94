"""Exact top-k with the documented tie rule, against an independent numpy reference."""

import numpy as np
import pytest
import torch

from sparsetrain.compressors.selection import (
    FAST_PATH_MIN_D,
    SAMPLE_SIZE,
    SORTED_BELOW,
    candidate_scan,
    exact_topk_indices,
    topk_magnitude_indices,
)


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
    got = topk_magnitude_indices(torch.from_numpy(scores), k)
    assert got.dtype == torch.long and got.numel() == k
    assert set(got.tolist()) == reference(scores, k)


def test_k_zero_and_k_above_d():
    scores = torch.rand(10)
    assert topk_magnitude_indices(scores, 0).numel() == 0
    assert sorted(topk_magnitude_indices(scores, 15).tolist()) == list(range(10))


D = FAST_PATH_MIN_D + 12_345
STRIDE = D // SAMPLE_SIZE
LARGE_CASES = {
    "gaussian": lambda rng: rng.standard_normal(D),
    "student_t": lambda rng: rng.standard_t(2, D),
    "few_levels": lambda rng: rng.integers(0, 7, D).astype(float),  # ties everywhere
    "all_equal": lambda rng: np.full(D, 3.0),
    "extremes": lambda rng: rng.choice([3e38, 1e-45, 0.0, 1e-38, 1.0], D),
    # The sample sees only small values: the threshold is low, many candidates pass.
    "big_values_off_sample": lambda rng: np.where(np.arange(D) % STRIDE == 0, 0.0, rng.random(D)),
    # The sample sees only the big values: too few candidates pass, the exact fallback runs.
    "big_values_on_sample": lambda rng: np.where(np.arange(D) % STRIDE == 0, 1 + rng.random(D), 0.0),
}


@pytest.mark.parametrize("case", LARGE_CASES)
@pytest.mark.parametrize("k", [1, 17, D // 1000, D // 16])
def test_fast_path_returns_exactly_the_reference_set(case, k):
    rng = np.random.default_rng(k)
    scores = np.abs(LARGE_CASES[case](rng)).astype(np.float32)
    got = topk_magnitude_indices(torch.from_numpy(scores), k)
    assert got.numel() == k and got.unique().numel() == k
    assert set(got.tolist()) == reference(scores, k)


def test_fast_path_equals_torch_topk_without_ties():
    scores = torch.randperm(D).float()  # distinct values: torch.topk's set is unambiguous
    for k in (1, 300, D // 100):
        expected = set(torch.topk(scores, k).indices.tolist())
        assert set(topk_magnitude_indices(scores, k).tolist()) == expected
        assert set(exact_topk_indices(scores, k).tolist()) == expected


@pytest.mark.parametrize("k", [SORTED_BELOW - 1, SORTED_BELOW, 3000])
@pytest.mark.parametrize("case", ["random", "ties_at_boundary", "all_equal"])
def test_exact_path_on_both_sides_of_the_sorted_threshold(case, k):
    rng = np.random.default_rng(k)
    scores = np.abs(np.concatenate([CASES[case](rng) for _ in range(5)]))
    got = exact_topk_indices(torch.from_numpy(scores), k)
    assert got.numel() == k and set(got.tolist()) == reference(scores, k)


def scaled_reference(values: np.ndarray, k: int, indices: np.ndarray, factors: np.ndarray) -> set[int]:
    scores = np.abs(values)
    with np.errstate(over="ignore"):  # 3e38 * a factor above 1 is inf, as in float32 torch
        scores[indices] *= factors
    return reference(scores, k)


@pytest.mark.parametrize("case", LARGE_CASES)
@pytest.mark.parametrize("k", [17, D // 1000, D // 16])
def test_magnitude_path_with_signs_and_reweighting(case, k):
    """Signed values (the residual itself) and RegTop-k's factors in [0, 1], some of them on the
    would-be top entries, some zero, some 1; factors above 1 take the exact path."""
    rng = np.random.default_rng(k + 1)
    values = (LARGE_CASES[case](rng) * rng.choice([-1.0, 1.0], D)).astype(np.float32)
    top = np.argsort(-np.abs(values), kind="stable")[: 2 * k]
    indices = np.unique(np.concatenate([top[::2], rng.choice(D, k, replace=False)]))
    tensor = torch.from_numpy(values)
    before = tensor.clone()
    scan = candidate_scan(tensor, k)  # as RegTop-k's compress hands it over
    for factors in (rng.random(indices.size), np.zeros(indices.size), np.ones(indices.size),
                    1 + rng.random(indices.size)):
        factors = factors.astype(np.float32)
        scaled = (torch.from_numpy(indices), torch.from_numpy(factors))
        expected = scaled_reference(values, k, indices, factors)
        for given in (None, scan):
            got = topk_magnitude_indices(tensor, k, scaled, scan=given)
            assert got.numel() == k and set(got.tolist()) == expected
    assert torch.equal(tensor, before)
    plain = topk_magnitude_indices(torch.from_numpy(values), k)
    assert set(plain.tolist()) == reference(np.abs(values), k)
