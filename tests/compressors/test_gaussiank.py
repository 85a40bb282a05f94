"""Gaussian-k selection for selection against the authors' arithmetic (tests/compressors/reference.py),
on 50-step error-feedback sequences of d = 1e6: normal, Student-t(3) and 70% exact zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsetrain.compressors import GaussianK
from tests.compressors.reference import Worker, gaussiank_loop

D, STEPS = 1_000_000, 50


def gradient(rng: np.random.Generator, distribution: str) -> np.ndarray:
    if distribution == "student_t3":
        values = rng.standard_t(3, D)
    else:
        values = rng.standard_normal(D)
        if distribution == "zeros70":
            values[rng.random(D) < 0.7] = 0.0
    return (1e-2 * values).astype(np.float32)


@pytest.mark.parametrize("ratio", [0.001, 0.01])
@pytest.mark.parametrize("distribution", ["normal", "student_t3", "zeros70"])
def test_the_papers_loop_matches_the_authors_selection_for_selection(distribution, ratio):
    """Same index sets, bit-for-bit residuals, same evaluations and in-range outcomes, every step;
    with no fallback, steps that end outside [2k/3, 4k/3] send what the last evaluation passed."""
    rng = np.random.default_rng(7)
    compressor, reference = GaussianK(D, ratio), Worker(D)
    k = max(int(D * ratio), 1)
    outcomes = []
    for step in range(1, STEPS + 1):
        grad = gradient(rng, distribution)
        payload = compressor.compress(torch.from_numpy(grad), step)
        loop = {}

        def select(acc: np.ndarray) -> np.ndarray:
            indices, loop["evaluations"], loop["in_range"] = gaussiank_loop(acc, k, ratio, exact_k=False)
            return indices

        indices, values = reference.step(grad, select)
        order = torch.argsort(payload.indices)
        np.testing.assert_array_equal(payload.indices[order].numpy(), indices, err_msg=f"step {step}")
        np.testing.assert_array_equal(payload.values[order].numpy(), values)
        np.testing.assert_array_equal(compressor.residual.numpy(), reference.residual)
        assert compressor.stats() == (float(loop["evaluations"]), float(loop["in_range"]))
        outcomes.append(loop["in_range"])
    assert not all(outcomes), "no step took the out-of-range branch: the sequence tests less than it says"


def test_exact_k_sends_k_where_the_loop_ends_out_of_range():
    rng = np.random.default_rng(3)
    compressor = GaussianK(D, 0.001, exact_k=True)
    out_of_range = 0
    for step in range(1, 11):
        payload = compressor.compress(torch.from_numpy(gradient(rng, "student_t3")), step)
        if compressor.stats()[1]:
            assert 2 * compressor.k / 3 <= payload.count <= 4 * compressor.k / 3
        else:
            out_of_range += 1
            assert payload.count == compressor.k
    assert out_of_range > 0
