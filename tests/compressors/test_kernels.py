"""The native scan returns exactly what the torch path returns, and leaves the same buffer."""

import numpy as np
import pytest
import torch

from sparsetrain.compressors import kernels
from sparsetrain.compressors.gaussiank import GaussianK
from sparsetrain.compressors.kernels import Scan
from sparsetrain.compressors.selection import SAMPLE_SIZE, candidate_scan

pytestmark = pytest.mark.skipif(kernels._kernels is None, reason="the optional C extension was not built")


@pytest.fixture(params=[1, 3], ids=["one_part", "three_parts"])
def chunked(request, monkeypatch):
    """Run the native scan as one part, or as three parts on three OpenMP threads."""
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
def test_scan_matches_torch(chunked, threshold, inclusive):
    a = values()
    expected = torch.nonzero(a.abs() >= threshold if inclusive else a.abs() > threshold).squeeze(1)
    native, plain = both(kernels.scan, a, threshold, a.numel(), inclusive=inclusive)
    assert native.count == plain.count == expected.numel()
    assert torch.equal(native.indices, expected) and torch.equal(plain.indices, expected)
    for scanned in (native, plain):  # NaN-free at every threshold tested: NaN passes none
        assert torch.equal(scanned.values, a[expected])
    assert native.total is None and plain.total is None


def test_scan_adds_in_place_exactly_as_torch(chunked):
    """The fused error-feedback add leaves the float32 sum torch leaves, and scans that sum."""
    g = values(seed=1)
    g[17] = 0.0  # keep the NaN of values() out of the sum, where it would spread to the moments
    residual = torch.randn(g.numel(), generator=torch.Generator().manual_seed(2))
    expected = residual + g
    native_buffer, plain_buffer = residual.clone(), residual.clone()
    native = kernels.scan(native_buffer, 0.5, g.numel(), add=g, moments=True)
    kernels.ENABLED = False
    try:
        plain = kernels.scan(plain_buffer, 0.5, g.numel(), add=g, moments=True)
    finally:
        kernels.ENABLED = True
    assert torch.equal(native_buffer, expected) and torch.equal(plain_buffer, expected)
    assert torch.equal(native.indices, torch.nonzero(expected.abs() > 0.5).squeeze(1))
    assert torch.equal(native.indices, plain.indices)
    assert torch.equal(native.values, expected[native.indices]) and torch.equal(plain.values, native.values)
    assert native.count == plain.count


def test_scan_counts_past_the_cap(chunked):
    a = values()
    scanned = kernels.scan(a, 0.5, cap=10)
    assert scanned.indices is None and scanned.count == int((a.abs() > 0.5).sum())
    assert kernels.scan(a, 0.5, cap=scanned.count).indices.numel() == scanned.count


def test_threshold_is_compared_in_float32():
    a = torch.tensor([1.0000001, 1.0], dtype=torch.float32)
    threshold = 1.00000001  # a double between the two floats' neighbours: rounds to 1.0 in float32
    native, plain = both(kernels.scan, a, threshold, 2)
    assert native.indices.tolist() == plain.indices.tolist() == [0]


@pytest.mark.parametrize("length", [100_003, 15, 16, 17, 0])
def test_moments_agree_with_float64(chunked, length):
    """Including lengths around the 16-entry SIMD runs, where the tail loop takes over."""
    a = torch.randn(length, generator=torch.Generator().manual_seed(1)) * 3 + 0.5
    scanned = kernels.scan(a, 1.0, length, moments=True)
    assert scanned.total == pytest.approx(float(a.double().sum()), rel=1e-6, abs=1e-6)
    assert scanned.total_sq == pytest.approx(float(a.double().square().sum()), rel=1e-6, abs=1e-6)
    assert torch.equal(scanned.indices, torch.nonzero(a.abs() > 1.0).squeeze(1))


def depleted_tail(rng, n):
    """A residual after error feedback sent its largest entries, plus a fresh smaller gradient."""
    residual = rng.standard_normal(n)
    residual[np.abs(residual) > 2.5] = 0.0
    return residual + 0.3 * rng.standard_normal(n)


def big_values_on_sample(rng, n):
    """160 large entries where the candidate sample looks: its threshold lands above the Gaussian
    fit's, with too few candidates to decide the count, so the loop must read the whole buffer."""
    data = rng.standard_normal(n)
    data[np.arange(160) * 37 * (n // SAMPLE_SIZE)] = 20.0
    return data


@pytest.mark.parametrize("exact_k", [True, False])
@pytest.mark.parametrize("distribution", ["gaussian", "student_t2", "few_levels", "depleted_tail", "big_values_on_sample"])
def test_gaussiank_selects_the_same_set_from_candidates_or_full_passes(chunked, exact_k, distribution):
    """The loop's shortcuts (evaluations on the scan's candidates, "too many" known from their
    count) take the same branches and return the same indices as full passes at every
    evaluation, with either backend. student_t2 and depleted_tail (the residual's tail removed,
    as error feedback leaves it) end outside [2k/3, 4k/3] and take the exact_k or the plain branch."""
    rng = np.random.default_rng(4)
    n = 300_000
    data = {
        "gaussian": rng.standard_normal(n),
        "student_t2": rng.standard_t(2, n),
        "few_levels": rng.integers(-3, 4, n).astype(float),
        "depleted_tail": depleted_tail(rng, n),
        "big_values_on_sample": big_values_on_sample(rng, n),
    }[distribution]
    acc = torch.from_numpy(data.astype(np.float32))
    compressor = GaussianK(n, 0.001, exact_k=exact_k)
    total, total_sq = float(acc.double().sum()), float(acc.double().square().sum())
    without_candidates = Scan(None, True, 0, None, None, total, total_sq)
    full = both(compressor.select_scanned, acc, without_candidates, 1)
    scanned = both(lambda: compressor.select_scanned(acc, candidate_scan(acc, compressor.k, moments=True), 1))
    expected = full[1].sort().values
    for got in (*full, *scanned):
        assert torch.equal(got.sort().values, expected)
    if exact_k:
        assert 2 * compressor.k / 3 <= expected.numel() <= 4 * compressor.k / 3 or expected.numel() == compressor.k


def test_returned_indices_survive_the_next_call(chunked):
    a = values()
    first = kernels.scan(a, 2.0, a.numel()).indices
    kept = first.clone()
    kernels.scan(a.flip(0).contiguous(), 0.5, a.numel())
    assert torch.equal(first, kept)
