"""The GPU scan (Triton), run by Triton's interpreter on CPU tensors: the index sets, values,
residuals and moments of the CPU scans, and compressors on it select what the reference selects.

The expected index sets come from numpy (``np.flatnonzero`` of the float32 comparison), not from
our own scans; the compressors are checked against ``tests/compressors/reference.py``.
"""

import importlib
import os

import numpy as np
import pytest
import torch

pytest.importorskip("triton")

from sparsetrain.compressors import kernels  # noqa: E402
from tests.compressors.test_compressors import LARGE, fast_path_case, simulate  # noqa: E402
from tests.compressors.test_kernels import values as awkward_values  # noqa: E402


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"  # set by tests/conftest.py where there is no GPU


@pytest.fixture
def on_triton(monkeypatch):
    """``kernels.scan`` on CPU buffers goes through the Triton kernel, interpreted."""
    if not INTERPRETED:
        pytest.skip("the kernel is compiled here, for CUDA tensors: test_the_compiled_kernel_on_the_gpu runs it")
    monkeypatch.setattr(kernels, "TRITON_ON_CPU", True)
    return importlib.import_module("sparsetrain.compressors.triton_kernels")


def reference(a: np.ndarray, threshold: float, inclusive: bool) -> np.ndarray:
    magnitude, t = np.abs(a), np.float32(threshold)
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(magnitude >= t if inclusive else magnitude > t)


@pytest.mark.parametrize("threshold", [0.0, 1e-45, 0.5, 2.0, 7.3, float("inf")])
@pytest.mark.parametrize("inclusive", [False, True])
def test_scan_collects_numpys_index_set_in_ascending_order(on_triton, threshold, inclusive):
    a = awkward_values()  # zeros of both signs, a denormal, infinities, NaN, exact ties at 2.0
    expected = reference(a.numpy(), threshold, inclusive)
    scanned = kernels.scan(a, threshold, a.numel(), inclusive=inclusive)
    assert scanned.count == expected.size
    np.testing.assert_array_equal(scanned.indices.numpy(), expected)
    assert torch.equal(scanned.values, a[torch.from_numpy(expected)])
    assert scanned.total is None


def test_error_feedback_and_moments_match_the_native_and_torch_scans(on_triton, monkeypatch):
    rng = np.random.default_rng(3)
    e, g = (torch.from_numpy(rng.standard_normal(50_001).astype(np.float32)) for _ in range(2))
    results = {}
    for backend in ("triton", "native", "torch"):
        monkeypatch.setattr(kernels, "TRITON_ON_CPU", backend == "triton")
        monkeypatch.setattr(kernels, "ENABLED", backend != "torch")
        a = e.clone()
        results[backend] = (a, kernels.scan(a, 1.5, g.numel(), add=g, moments=True))
    a, scanned = results["triton"]
    assert torch.equal(a, e + g)  # one float32 add, written once
    expected = reference((e + g).numpy(), 1.5, False)
    np.testing.assert_array_equal(scanned.indices.numpy(), expected)
    exact = (e + g).double()
    assert scanned.total == pytest.approx(float(exact.sum()), abs=1e-3)
    assert scanned.total_sq == pytest.approx(float(exact.square().sum()), rel=1e-6)
    for other, other_scan in results.values():
        assert torch.equal(other, a) and torch.equal(other_scan.indices, scanned.indices)
        assert other_scan.total == pytest.approx(scanned.total, abs=1e-2)
        assert other_scan.total_sq == pytest.approx(scanned.total_sq, rel=1e-5)


def test_more_entries_than_the_cap_give_the_count_and_no_indices(on_triton):
    a = torch.arange(-5000, 5000, dtype=torch.float32)
    scanned = kernels.scan(a, 100.0, cap=50)
    assert scanned.count == 2 * 4900 - 1 and scanned.indices is None and scanned.values is None


@pytest.mark.parametrize("name", ["topk", "regtopk", "gaussiank"])
def test_compressors_on_the_triton_scan_match_the_reference(on_triton, monkeypatch, name):
    """The fast path (sampled threshold, candidates from the scan, error feedback fused, Gaussian-k's
    loop on the candidates) on the Triton scan: the reference's indices, values and residuals."""
    monkeypatch.setattr(on_triton, "BLOCK", 1 << 15)  # fewer interpreted programs; same result
    make, refs = fast_path_case(name)
    calls = []
    scan_arrays = on_triton.scan_arrays
    monkeypatch.setattr(on_triton, "scan_arrays", lambda *a: calls.append(1) or scan_arrays(*a))
    simulate(make, refs, heavy_tailed=True, dim=LARGE, steps=3)
    assert calls, "the Triton scan never ran"


@pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(), reason="needs a GPU and the compiled kernel")
@pytest.mark.parametrize("inclusive", [False, True])
def test_the_compiled_kernel_on_the_gpu_matches_the_cpu_scan(inclusive):
    rng = np.random.default_rng(5)
    e, g = (torch.from_numpy(rng.standard_t(3, 3_000_017).astype(np.float32)) for _ in range(2))
    on_gpu = e.cuda()
    scanned = kernels.scan(on_gpu, 4.0, 200_000, inclusive=inclusive, add=g.cuda(), moments=True)
    a = e + g
    expected = reference(a.numpy(), 4.0, inclusive)
    assert torch.equal(on_gpu.cpu(), a)
    np.testing.assert_array_equal(scanned.indices.cpu().numpy(), expected)
    assert torch.equal(scanned.values.cpu(), a[torch.from_numpy(expected)])
    assert scanned.total_sq == pytest.approx(float(a.double().square().sum()), rel=1e-6)
