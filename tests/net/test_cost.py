"""Wire bytes and α-β times of the ring collectives, against the formulas written out here."""

import pytest

from sparsetrain.net.cost import allgather, allreduce, parse_rate


@pytest.mark.parametrize("text, bits", [("1gbit", 1e9), ("100mbit", 1e8), ("2.5gbit", 2.5e9), ("64kbit", 64e3),
                                         (" 10GBIT ", 1e10)])
def test_rates_are_tc_units_in_bits(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text", ["fast", "1gbps", "100", "0mbit", "-1gbit", "1 g"])
def test_other_rates_are_refused(text):
    with pytest.raises(ValueError, match="is not a rate like 1gbit"):
        parse_rate(text)


@pytest.mark.parametrize("workers", [2, 4, 20])
def test_ring_bytes_and_steps(workers):
    n = 4e6
    assert allreduce(n, workers).wire_bytes == pytest.approx(2 * (workers - 1) * n / workers, rel=1e-15)
    assert allreduce(n, workers).rounds == 2 * (workers - 1)
    assert allgather(n, workers).wire_bytes == (workers - 1) * n and allgather(n, workers).rounds == workers - 1


def test_alpha_beta_time():
    # P = 4, 4 MB all-reduced on 1 Gbit/s with 10 us per step: 6 x 10 us + 1.5 x 4e6 x 8 / 1e9 s
    assert allreduce(4e6, 4).seconds(1e9, 10e-6) == pytest.approx(6e-5 + 0.048, rel=1e-12)
    assert allgather(1e6, 4).seconds(1e8, 0.0) == pytest.approx(3e6 * 8 / 1e8, rel=1e-12)
