"""Error feedback, written once in SparseCompressor, and the density -> k rule."""

import pytest
import torch

from sparsetrain.compressors import DGC, Dense, GaussianK, RandomK, RegTopK, SparseCompressor, TopK, density_to_k


@pytest.mark.parametrize(
    "ratio, dim, k", [(0.6, 100, 60), (0.4, 100, 40), (0.001, 11_173_962, 11_173), (1e-9, 100, 1), (1.0, 7, 7)]
)
def test_density_to_k(ratio, dim, k):
    assert density_to_k(ratio, dim) == k


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_ratio_out_of_range_is_refused(ratio):
    with pytest.raises(ValueError, match="ratio"):
        TopK(dim=10, ratio=ratio)


class EveryThird(SparseCompressor):
    """A compressor whose selection ignores the values, to test error feedback on its own."""

    def select(self, acc, step):
        return torch.arange(step % 3, self.dim, 3)


@pytest.mark.parametrize("cls", [TopK, EveryThird])
def test_error_feedback_invariant_is_exact(cls):
    """sent + new residual == gradient + old residual, bit for bit, over several steps."""
    gen = torch.Generator().manual_seed(0)
    compressor = cls(dim=1000, ratio=0.05)
    for step in range(1, 8):
        grad = torch.randn(1000, generator=gen) * 10 ** torch.randint(-3, 3, (1000,), generator=gen)
        expected = grad + compressor.residual  # the float32 sum a = g + e_old
        payload = compressor.compress(grad.clone(), step)
        sent = torch.zeros(1000).index_put_((payload.indices,), payload.values)
        assert torch.equal(sent + compressor.residual, expected)
        assert torch.all(compressor.residual[payload.indices] == 0)
        assert payload.indices.unique().numel() == payload.count


@pytest.mark.parametrize("value_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("cls", [TopK, EveryThird])
def test_half_precision_payloads_keep_the_rounding_error_in_the_residual(cls, value_dtype):
    """decode(sent) + new residual == gradient + old residual, bit for bit in float32, with values
    across fp16's range (up to twice its largest, where it saturates)."""
    gen = torch.Generator().manual_seed(1)
    compressor = cls(dim=1000, ratio=0.05, value_dtype=value_dtype)
    for step in range(1, 8):
        grad = torch.randn(1000, generator=gen) * 10.0 ** torch.randint(-9, 5, (1000,), generator=gen)
        grad = grad.clamp(-131_000, 131_000)
        expected = grad + compressor.residual
        payload = compressor.compress(grad.clone(), step)
        assert payload.values.dtype == getattr(torch, value_dtype) and torch.all(torch.isfinite(payload.values))
        sent = torch.zeros(1000).index_put_((payload.indices,), payload.values.float())
        assert torch.equal(sent + compressor.residual, expected)
        if value_dtype == "bfloat16":  # what stays behind on I is the rounding: half an ulp of 8 bits
            assert torch.all(compressor.residual[payload.indices].abs() <= expected[payload.indices].abs() * 2**-8)


def test_an_unknown_value_dtype_is_refused():
    with pytest.raises(ValueError, match="compressor.value_dtype='int8' is not allowed"):
        TopK(dim=10, ratio=0.5, value_dtype="int8")


def test_a_subclass_overriding_select_is_called():
    """TopK fuses its selection with error feedback; a user's subclass that overrides select
    still has it called, and error feedback still holds."""

    class SmallestFirst(TopK):
        def select(self, acc, step):
            return torch.topk(acc.abs(), self.k, largest=False).indices

    compressor = SmallestFirst(dim=6, ratio=0.34)  # k = 2
    payload = compressor.compress(torch.tensor([1.0, -5.0, 0.5, 4.0, 0.0, 3.0]), 1)
    assert sorted(payload.indices.tolist()) == [2, 4]
    assert compressor.residual.tolist() == [1.0, -5.0, 0.0, 4.0, 0.0, 3.0]


class MomentumFirst(TopK):
    """Overrides compress, as DGC does: its gradient must go through it."""

    def compress(self, grad, step):
        return super().compress(grad.mul(2.0), step)


@pytest.mark.parametrize(("cls", "takes"), [(TopK, True), (GaussianK, True), (RegTopK, True), (RandomK, True),
                                            (EveryThird, True), (DGC, False), (MomentumFirst, False),
                                            (Dense, False)])
def test_only_plain_error_feedback_takes_the_gradient_in_its_residual(cls, takes):
    """scope=bucket adds the gradient into the residual only where compress is e += g then select."""
    assert cls.takes_gradient_in_residual() is takes


@pytest.mark.parametrize("cls", [TopK, GaussianK, RegTopK, RandomK, EveryThird])
def test_compressing_a_residual_that_already_holds_the_gradient_is_compress(cls):
    """``residual += g`` by the caller (scope=bucket, during backward), then compress_accumulated:
    the same payloads and residuals as compress(g), bit for bit, over steps where the fast path
    applies (d = 2**19); RegTop-k's memory of what it sent follows either way."""
    gen = torch.Generator().manual_seed(0)
    given, added = cls(dim=2**19, ratio=0.001, seed=3), cls(dim=2**19, ratio=0.001, seed=3)
    signal = torch.randn(2**19, generator=gen)
    signal[:600] *= 30  # more than k = 524 entries that stay the largest: RegTop-k's reweighting decides
    for step in range(1, 5):
        grad = signal + 0.1 * torch.randn(2**19, generator=gen)
        expected = given.compress(grad, step)
        added.residual.add_(grad)
        payload = added.compress_accumulated(step)
        assert torch.equal(payload.indices, expected.indices) and torch.equal(payload.values, expected.values)
        assert torch.equal(added.residual, given.residual)
        aggregate = torch.randn(2**19, generator=gen)
        given.observe(aggregate)
        added.observe(aggregate)


def test_topk_sends_the_largest_accumulated_entries():
    compressor = TopK(dim=6, ratio=0.34)  # k = 2
    first = compressor.compress(torch.tensor([1.0, -5.0, 0.5, 4.0, 0.0, 3.0]), 1)
    assert sorted(first.indices.tolist()) == [1, 3]
    # The residual of entry 5 (3.0) plus a new 2.0 now beats the fresh -4.5 at entry 0.
    second = compressor.compress(torch.tensor([-4.5, 0.0, 0.0, 0.0, 0.0, 2.0]), 2)
    assert sorted(second.indices.tolist()) == [0, 5]
    assert sorted(second.values.tolist()) == [-3.5, 5.0]


def test_dense_sends_everything_and_keeps_no_state():
    grad = torch.randn(10)
    payload = Dense(dim=10, ratio=0.1).compress(grad, 1)
    assert payload.indices is None and torch.equal(payload.values, grad)
    assert Dense.dense and Dense(dim=10).state_dict() == {}
