"""The native threshold kernels return exactly what the torch path returns."""

import numpy as np
import pytest
import torch

from sparsetrain.compressors import kernels
from sparsetrain.compressors.gaussiank import GaussianK

pytestmark = pytest.mark.skipif(kernels._kernels is None, reason="the optional C extension was not built")


@pytest.fixture(params=[1, 3], ids=["one_chunk", "three_chunks"])
def chunked(request, monkeypatch):
    """Run the native kernels on one chunk, or split over three threads."""
    monkeypatch.setattr(kernels, "CHUNK_MIN", 1000)
    threads = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(threads)


def both(fn, *args, **kwargs):
    native = fn(*args, **kwargs)
    kernels.ENABLED = False
    try:
        plain = fn(*args, **kwargs)
    finally:
        kernels.ENABLED = True
    return native, plain


def values(n=10_007, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_t(3, n).astype(np.float32)
    a[::97] = 0.0
    a[5::101] = -0.0
    a[7::103] = 1e-45  # denormal
    a[11] = np.inf
    a[13] = -np.inf
    a[17] = np.nan
    a[19::211] = 2.0  # exact ties with a threshold below
    return torch.from_numpy(a)


@pytest.mark.parametrize("threshold", [0.0, 1e-45, 0.5, 2.0, 7.3, float("inf")])
@pytest.mark.parametrize("inclusive", [False, True])
def test_abs_above_matches_torch(chunked, threshold, inclusive):
    a = values()
    expected = torch.nonzero(a.abs() >= threshold if inclusive else a.abs() > threshold).squeeze(1)
    (count, got), (plain_count, plain) = both(kernels.abs_above, a, threshold, a.numel(), inclusive)
    assert count == plain_count == expected.numel()
    assert torch.equal(got, expected) and torch.equal(plain, expected)


def test_abs_above_counts_past_the_cap(chunked):
    a = values()
    count, got = kernels.abs_above(a, 0.5, cap=10)
    assert got is None and count == int((a.abs() > 0.5).sum())
    assert kernels.abs_above(a, 0.5, cap=count)[1].numel() == count


def test_threshold_is_compared_in_float32():
    a = torch.tensor([1.0000001, 1.0], dtype=torch.float32)
    threshold = 1.00000001  # a double between the two floats' neighbours: rounds to 1.0 in float32
    native, plain = both(kernels.abs_above, a, threshold, 2)
    assert native[1].tolist() == plain[1].tolist() == [0]


def test_moments_agree_with_float64(chunked):
    a = torch.randn(100_003, generator=torch.Generator().manual_seed(1)) * 3 + 0.5
    total, total_sq = kernels.moments(a)
    assert total == pytest.approx(float(a.double().sum()), rel=1e-6)
    assert total_sq == pytest.approx(float(a.double().square().sum()), rel=1e-6)


@pytest.mark.parametrize("refine", [True, False])
@pytest.mark.parametrize("distribution", ["gaussian", "student_t2", "few_levels"])
def test_gaussiank_selects_the_same_set_with_either_backend(chunked, refine, distribution):
    """Given the same moments, the loop takes the same branches and returns the same indices
    (student_t2 ends outside [2k/3, 4k/3] and takes the refine branches)."""
    rng = np.random.default_rng(4)
    n = 300_000
    data = {
        "gaussian": rng.standard_normal(n),
        "student_t2": rng.standard_t(2, n),
        "few_levels": rng.integers(-3, 4, n).astype(float),
    }[distribution]
    acc = torch.from_numpy(data.astype(np.float32))
    compressor = GaussianK(n, 0.001, refine=refine)
    total, total_sq = float(acc.double().sum()), float(acc.double().square().sum())
    native, plain = both(compressor.select_with_moments, acc, total, total_sq)
    assert torch.equal(native.sort().values, plain.sort().values)
    if refine:
        assert 2 * compressor.k / 3 <= native.numel() <= 4 * compressor.k / 3 or native.numel() == compressor.k


def test_returned_indices_survive_the_next_call(chunked):
    a = values()
    _, first = kernels.abs_above(a, 2.0, a.numel())
    kept = first.clone()
    kernels.abs_above(a.flip(0).contiguous(), 0.5, a.numel())
    assert torch.equal(first, kept)
