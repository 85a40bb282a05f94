"""Every compressor against the independent numpy reference, over several steps with 4 workers."""

import numpy as np
import pytest
import torch

from sparsetrain.compressors import GaussianK, RandomK, RegTopK, TopK, kernels
from sparsetrain.compressors.selection import FAST_PATH_MIN_D
from tests.compressors.reference import (
    RegTopKReference,
    Worker,
    aggregate,
    gaussiank_select,
    topk_set,
)

DIM, WORKERS, STEPS = 400, 4, 8


def gradients(step: int, heavy_tailed: bool = False, dim: int = DIM) -> list[np.ndarray]:
    rng = np.random.default_rng(step)
    draw = (lambda: rng.standard_t(3, dim)) if heavy_tailed else (lambda: rng.standard_normal(dim))
    shared = draw()  # a common component so that aggregation matters
    return [(shared + draw() * (1 + w)).astype(np.float32) for w in range(WORKERS)]


def simulate(make, reference_workers, heavy_tailed=False, dim=DIM, steps=STEPS):
    """Run the torch compressors and the numpy reference side by side; compare every step."""
    compressors = [make(w) for w in range(WORKERS)]
    for step in range(1, steps + 1):
        grads = gradients(step, heavy_tailed, dim)
        payloads = [c.compress(torch.from_numpy(g.copy()), step) for c, g in zip(compressors, grads)]
        expected = [ref.step(g) for ref, g in zip(reference_workers, grads)]
        for payload, (indices, values), compressor, ref in zip(payloads, expected, compressors, reference_workers):
            order = torch.argsort(payload.indices)
            np.testing.assert_array_equal(payload.indices[order].numpy(), indices)
            np.testing.assert_array_equal(payload.values[order].numpy(), values)
            np.testing.assert_array_equal(compressor.residual.numpy(), ref.residual)
        gbar = torch.zeros(dim)
        for payload in payloads:
            gbar.index_add_(0, payload.indices, payload.values)
        gbar /= WORKERS
        # float32 sums of up to 4 terms of size ~1-10 against float64: a few ulps of 10.
        np.testing.assert_allclose(gbar.numpy(), aggregate(dim, expected), rtol=1e-6, atol=1e-5)
        for compressor in compressors:
            compressor.observe(gbar)
        for ref in reference_workers:
            if hasattr(ref, "prev_aggregate"):
                ref.prev_aggregate = gbar.numpy().astype(np.float64)
    return compressors


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5])
def test_topk(ratio):
    k = max(1, int(ratio * DIM))
    refs = [Worker(DIM) for _ in range(WORKERS)]
    for ref in refs:
        ref.step = (lambda r: lambda g: Worker.step(r, g, lambda a: topk_set(np.abs(a), k)))(ref)
    simulate(lambda w: TopK(DIM, ratio, worker=w, num_workers=WORKERS), refs)


@pytest.mark.parametrize("ratio, mu", [(0.05, 4.0), (0.3, 4.0), (0.3, 0.5), (0.6, 5.0)])
def test_regtopk(ratio, mu):
    k = max(1, int(ratio * DIM))
    refs = [RegTopKReference(DIM, k, WORKERS, mu) for _ in range(WORKERS)]
    simulate(lambda w: RegTopK(DIM, ratio, mu=mu, worker=w, num_workers=WORKERS), refs)


@pytest.mark.parametrize("exact_k", [False, True])
@pytest.mark.parametrize("heavy_tailed", [False, True])
@pytest.mark.parametrize("ratio", [0.01, 0.05, 0.2])
def test_gaussiank(ratio, exact_k, heavy_tailed):
    k = max(1, int(ratio * DIM))
    refs = [Worker(DIM) for _ in range(WORKERS)]
    for ref in refs:
        ref.step = (lambda r: lambda g: Worker.step(r, g, lambda a: gaussiank_select(a, k, ratio, exact_k)))(ref)
    simulate(lambda w: GaussianK(DIM, ratio, exact_k=exact_k, worker=w, num_workers=WORKERS), refs, heavy_tailed)


LARGE = FAST_PATH_MIN_D + 4_321


def fast_path_case(name: str, ratio: float = 0.002):
    """``(make, refs)`` for :func:`simulate` at a size where the fast path runs: the compressor
    ``name`` (topk, regtopk, gaussiank as the paper, or gaussiank_exact_k with the fallback) and its
    references."""
    k = int(ratio * LARGE)
    if name == "regtopk":
        refs = [RegTopKReference(LARGE, k, WORKERS, 4.0) for _ in range(WORKERS)]
        return (lambda w: RegTopK(LARGE, ratio, worker=w, num_workers=WORKERS)), refs
    if name == "topk":
        select, make = (lambda a: topk_set(np.abs(a), k)), (lambda w: TopK(LARGE, ratio))
    else:
        exact_k = name == "gaussiank_exact_k"
        select = lambda a: gaussiank_select(a, k, ratio, exact_k)  # noqa: E731
        make = lambda w: GaussianK(LARGE, ratio, exact_k=exact_k)  # noqa: E731
    refs = [Worker(LARGE) for _ in range(WORKERS)]
    for ref in refs:
        ref.step = (lambda r: lambda g: Worker.step(r, g, select))(ref)
    return make, refs


@pytest.mark.parametrize("native", [True, False], ids=["native", "torch_path"])
@pytest.mark.parametrize("name", ["topk", "regtopk", "gaussiank", "gaussiank_exact_k"])
def test_fused_error_feedback_and_fast_path_match_the_reference(name, native, monkeypatch):
    """At a size where the fast path runs, error feedback fused with the candidate scan (and
    Gaussian-k's loop on those candidates) gives the reference's indices, values and residuals."""
    monkeypatch.setattr(kernels, "ENABLED", native and kernels.ENABLED)
    make, refs = fast_path_case(name)
    simulate(make, refs, heavy_tailed=True, dim=LARGE, steps=3)


def test_regtopk_first_step_is_topk():
    grad = torch.randn(1000)
    regtopk = RegTopK(1000, 0.05, worker=0, num_workers=4).compress(grad.clone(), 1)
    topk = TopK(1000, 0.05).compress(grad.clone(), 1)
    assert torch.equal(regtopk.indices.sort().values, topk.indices.sort().values)


def test_regtopk_demotes_an_entry_the_others_cancel():
    """Worker 0's largest entry is cancelled by workers 1 and 2 every step: Top-k keeps sending
    it, RegTop-k drops it after seeing the aggregate and sends its second largest instead."""
    grads = [
        torch.tensor([10.0, 3.0, 0.1, 0.0]),
        torch.tensor([-5.0, 0.0, 0.0, 0.2]),
        torch.tensor([-5.0, 0.0, 0.0, 0.3]),
    ]
    for cls, expected_second in [(TopK, 0), (RegTopK, 1)]:
        workers = [cls(4, 0.25, worker=w, num_workers=3) for w in range(3)]
        sent = []
        for step in (1, 2):
            payloads = [c.compress(g.clone(), step) for c, g in zip(workers, grads)]
            gbar = torch.zeros(4)
            for p in payloads:
                gbar.index_add_(0, p.indices, p.values)
            gbar /= 3
            for c in workers:
                c.observe(gbar)
            sent.append(int(payloads[0].indices))
        assert sent == [0, expected_second], cls


def test_regtopk_guards_a_zero_sent_value():
    compressor = RegTopK(4, 0.5, num_workers=2)
    compressor.compress(torch.tensor([0.0, 0.0, 0.0, 0.0]), 1)  # sends two zeros
    compressor.observe(torch.zeros(4))
    weights = compressor.weights()
    assert torch.all(torch.isfinite(weights)) and torch.all(weights == 1.0)


def test_gaussiank_on_gaussian_data_selects_within_a_third_of_k():
    gen = torch.Generator().manual_seed(0)
    for ratio in (0.001, 0.01, 0.1):
        compressor = GaussianK(200_000, ratio)
        counts = [compressor.select(torch.randn(200_000, generator=gen), s).numel() for s in range(1, 6)]
        assert all(2 * compressor.k / 3 <= c <= 4 * compressor.k / 3 for c in counts), (ratio, counts)


@pytest.mark.parametrize("values", [np.zeros(1000), np.full(1000, 2.5), np.full(1000, -1e-30), np.full(1, 3.0)])
def test_gaussiank_degenerate_inputs(values):
    """Zero or constant gradients and tiny values: no NaN, and the documented counts:
    exactly k with exact_k (lowest indices on ties), whatever the paper's loop ends with without."""
    grad = torch.from_numpy(values.astype(np.float32))
    refined = GaussianK(grad.numel(), 0.01, exact_k=True).compress(grad.clone(), 1)
    assert refined.count == max(1, int(0.01 * grad.numel()))
    assert sorted(refined.indices.tolist()) == list(range(refined.count))
    assert torch.all(torch.isfinite(refined.values))
    plain = GaussianK(grad.numel(), 0.01).compress(grad.clone(), 1)
    assert torch.all(torch.isfinite(plain.values))
    assert plain.count in (0, grad.numel())  # constant magnitudes: all above the threshold or none


def test_randomk_is_uniform_reproducible_and_per_worker():
    make = lambda worker, seed=0: RandomK(1000, 0.01, worker=worker, seed=seed)  # noqa: E731
    first = make(0).select(torch.zeros(1000), step=3)
    assert first.numel() == 10 and first.unique().numel() == 10
    assert torch.equal(first, make(0).select(torch.zeros(1000), step=3))
    assert not torch.equal(first, make(1).select(torch.zeros(1000), step=3))
    assert not torch.equal(first, make(0).select(torch.zeros(1000), step=4))
    assert not torch.equal(first, make(0, seed=1).select(torch.zeros(1000), step=3))
    hits = torch.zeros(1000)
    for step in range(2000):
        hits[make(0).select(torch.zeros(1000), step)] += 1
    # 20,000 draws over 1000 entries: each entry is hit 20 +- 4.5 times; a chi-square over 999
    # degrees of freedom stays well below 1200 unless the draw is biased.
    assert float(((hits - 20) ** 2 / 20).sum()) < 1200
    dense = RandomK(100, 0.5, worker=0).select(torch.zeros(100), 1)  # the randperm branch
    assert dense.unique().numel() == 50


def test_randomk_error_feedback_invariant():
    compressor = RandomK(500, 0.1, worker=2, seed=7)
    grad = torch.randn(500)
    expected = grad + compressor.residual
    payload = compressor.compress(grad, 1)
    assert torch.equal(torch.zeros(500).index_put_((payload.indices,), payload.values) + compressor.residual, expected)
