"""Learning-rate schedules and the run length from epochs and steps."""

import math

import pytest

from sparsetrain.schedule import DensitySchedule, LRSchedule, total_steps


def test_warmup_rises_linearly_to_the_base_rate():
    schedule = LRSchedule(base=0.4, total=100, kind="cosine", warmup=10)
    assert [schedule(s) for s in (1, 5, 10)] == pytest.approx([0.04, 0.2, 0.4])


def test_cosine_starts_at_the_base_after_warmup_and_never_reaches_zero():
    schedule = LRSchedule(base=0.1, total=100, kind="cosine", warmup=10)
    rates = [schedule(s) for s in range(11, 101)]
    assert rates[0] == 0.1 and all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] > 0
    assert schedule(10 + 46) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))


def test_step_schedule_divides_at_milestones():
    schedule = LRSchedule(base=1.0, total=200, kind="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [schedule(s) for s in (1, 100, 101, 150, 151, 200)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_constant_is_the_base_rate():
    assert {LRSchedule(base=0.01, total=50)(s) for s in range(1, 51)} == {0.01}


@pytest.mark.parametrize(
    "epochs, steps, per_epoch, expected",
    [(30, None, 390, 11700), (30, 500, 390, 500), (None, 2500, 1, 2500), (0.5, None, 12, 6), (2, 1000, 5, 10)],
)
def test_total_steps(epochs, steps, per_epoch, expected):
    assert total_steps(epochs, steps, per_epoch) == expected


def test_total_steps_needs_a_length():
    with pytest.raises(ValueError, match="train.epochs or train.steps"):
        total_steps(None, None, 10)


def test_density_warmup_follows_epochs_then_the_target():
    """The Gaussian-k authors' schedule: 1/64 in epoch 0, 0.004 in epoch 1, then the ratio."""
    schedule = DensitySchedule(0.001, (0.015625, 0.004), steps_per_epoch=3)
    assert [schedule(s) for s in range(1, 10)] == [0.015625] * 3 + [0.004] * 3 + [0.001] * 3
    assert {DensitySchedule(0.01, (), 5)(s) for s in range(1, 20)} == {0.01}
