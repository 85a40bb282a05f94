"""The guards that may refuse a step: reject factor and non-finite policy, without a process group."""

import pytest
import torch

from sparsetrain.compressors import TopK
from sparsetrain.train.guards import NonfiniteGradient, NonfiniteGuard, RejectGuard


def test_reject_factor_skips_steps_whose_aggregate_jumps():
    guard = RejectGuard(100.0)
    norms = [1.0, 50.0, 6000.0, 4000.0, 1e6]  # squared norms: accept, accept, reject, accept, reject
    assert [guard.admits(torch.tensor([n**0.5])) for n in norms] == [True, True, False, True, False]
    assert guard.rejected_steps == 2 and guard.metrics() == {"train/rejected_steps": 2.0}
    restored = RejectGuard(100.0)
    restored.load_state_dict(guard.state_dict())
    jump = torch.tensor([5e5**0.5])  # 125x the last accepted squared norm, 4000
    assert restored.admits(jump) is False and restored.rejected_steps == 3


def test_no_reject_factor_accepts_everything():
    guard = RejectGuard(None)
    assert all(guard.admits(torch.tensor([x])) for x in (1.0, 1e30, float("inf")))
    assert guard.metrics() == {}


def test_nonfinite_error_policy_raises_naming_the_step():
    guard = NonfiniteGuard("error", list, torch.zeros(3))
    assert guard.admits(torch.ones(3), step=1)
    with pytest.raises(NonfiniteGradient, match="step 7 holds NaN or Inf"):
        guard.admits(torch.tensor([1.0, float("nan"), 0.0]), step=7)


def test_nonfinite_check_is_exact_where_the_sum_is_not():
    guard = NonfiniteGuard("error", list, torch.zeros(3))
    assert guard.admits(torch.tensor([3e38, 3e38, 3e38]), step=1)  # finite, though their float32 sum is inf
    for bad in ([float("inf"), 1.0], [float("inf"), float("-inf")], [-3e38, float("-inf")]):
        with pytest.raises(NonfiniteGradient):
            guard.admits(torch.tensor(bad), step=2)


def test_nonfinite_skip_policy_scrubs_compressor_state_and_counts():
    compressor = TopK(dim=4, ratio=0.25)
    compressor.residual.copy_(torch.tensor([1.0, float("inf"), float("nan"), -2.0]))
    guard = NonfiniteGuard("skip", lambda: [compressor], torch.zeros(4))
    assert not guard.admits(torch.tensor([float("nan")] * 4), step=3)
    assert compressor.residual.tolist() == [1.0, 0.0, 0.0, -2.0]
    assert guard.metrics() == {"train/skipped_steps": 1.0}


def test_nonfinite_skip_policy_stops_when_the_parameters_diverged():
    params = torch.tensor([1.0, float("inf")])
    guard = NonfiniteGuard("skip", list, params)
    with pytest.raises(NonfiniteGradient, match="the parameters hold NaN or Inf at step 4.*lower train.lr"):
        guard.admits(torch.tensor([float("nan"), 0.0]), step=4)
