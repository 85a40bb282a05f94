"""DGC against the independent numpy reference (tests/compressors/reference.py), 4 workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsetrain.compressors import DGC
from tests.compressors.reference import DGCReference
from tests.compressors.test_compressors import WORKERS, gradients

DIM, STEPS = 3000, 10


@pytest.mark.parametrize("ratio, clip_norm", [(0.01, None), (0.05, None), (0.01, 20.0)])
def test_dgc_matches_the_reference(ratio, clip_norm):
    """Momentum correction, the sampled threshold with its back-off, hierarchical top-k and
    momentum factor masking: the same entries every step, and the same values, velocity and
    momentum (bit for bit without clipping; clipping's norm is summed in another order)."""
    compressors = [DGC(DIM, ratio, clip_norm=clip_norm, worker=w, num_workers=WORKERS, seed=3) for w in range(WORKERS)]
    k = compressors[0].k
    refs = [DGCReference(DIM, k, ratio, WORKERS, 0.9, clip_norm) for _ in range(WORKERS)]
    exact = clip_norm is None
    counts = []
    for step in range(1, STEPS + 1):
        for compressor, ref, grad in zip(compressors, refs, gradients(step, dim=DIM)):
            payload = compressor.compress(torch.from_numpy(grad.copy()), step)
            indices, values = ref.step(grad, compressor.samples(step).numpy())
            order = torch.argsort(payload.indices)
            np.testing.assert_array_equal(payload.indices[order].numpy(), indices)
            compare = np.testing.assert_array_equal if exact else (
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6))
            compare(payload.values[order].numpy(), values)
            compare(compressor.residual.numpy(), ref.residual)
            compare(compressor.momentum_buffer.numpy(), ref.u)
            assert torch.all(compressor.momentum_buffer[payload.indices] == 0)
            counts.append(payload.count)
    assert 0 < min(counts) and max(counts) <= k


def test_dgc_backs_off_nine_times_then_sends_the_k_largest_of_all_entries():
    """|v| is 10 at two of the sampled positions and about 1.5 elsewhere: the sampled threshold 10
    lets 2 entries pass, 9 back-offs (10 * 0.8^9 = 1.34) let all 3000 pass, far more than the
    first pass collects (4 k), and the k largest of them are sent."""
    rng = np.random.default_rng(11)
    compressor = DGC(DIM, 0.01, momentum=0.0, seed=3)
    ref = DGCReference(DIM, compressor.k, 0.01, 1, 0.0, None)
    samples = compressor.samples(1).numpy()
    grad = (np.sign(rng.standard_normal(DIM)) * (1.5 + 1e-3 * rng.random(DIM))).astype(np.float32)
    grad[samples[:2]] = 10.0
    payload = compressor.compress(torch.from_numpy(grad.copy()), 1)
    indices, values = ref.step(grad, samples)
    order = torch.argsort(payload.indices)
    np.testing.assert_array_equal(payload.indices[order].numpy(), indices)
    np.testing.assert_array_equal(payload.values[order].numpy(), values)
    assert payload.count == compressor.k and set(samples[:2]) <= set(indices.tolist())


def test_without_masking_the_momentum_keeps_its_sent_entries():
    grad = torch.from_numpy(gradients(1, dim=DIM)[0])
    compressor = DGC(DIM, 0.01, momentum_masking=False)
    payload = compressor.compress(grad.clone(), 1)
    assert torch.equal(compressor.momentum_buffer, grad)  # u = 0.9 * 0 + g, nothing zeroed
    assert torch.all(compressor.residual[payload.indices] == 0)


def test_the_samples_are_reproducible_per_worker_and_step():
    a, b = DGC(DIM, 0.01, worker=0, seed=1), DGC(DIM, 0.01, worker=1, seed=1)
    assert torch.equal(a.samples(3), DGC(DIM, 0.01, worker=0, seed=1).samples(3))
    assert not torch.equal(a.samples(3), b.samples(3)) and not torch.equal(a.samples(3), a.samples(4))
    assert a.samples(1).numel() == max(30, 200)  # 1% of d, at least 2 / ratio
