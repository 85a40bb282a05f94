"""The exchange with real gloo workers against a dense average computed independently (numpy)."""

import numpy as np
import pytest
import torch

from sparsetrain.compressors import Payload
from sparsetrain.exchange import DenseExchange, SparseExchange, dense_bytes
from sparsetrain.layout import WorkerLayout
from tests.conftest import run_gloo

DIM = 50


def contributions(worker: int, count: int):
    """Worker ``worker``'s sparse contribution: deterministic values at distinct random indices."""
    rng = np.random.default_rng(worker)
    indices = rng.choice(DIM, size=count, replace=False)
    values = rng.standard_normal(count).astype(np.float32)
    return indices, values


def counts_for(num_workers: int, fixed: bool) -> list[int]:
    return [7] * num_workers if fixed else [(3 * w) % 11 for w in range(num_workers)]  # worker 0 sends 0


def _exchange_worker(rank, nprocs, per_process, fixed, out_dir):
    layout = WorkerLayout.create(rank, nprocs, nprocs * per_process)
    counts = counts_for(layout.num_workers, fixed)
    exchange = SparseExchange(DIM, 7, layout, torch.device("cpu"), fixed_count=fixed)
    for worker in layout.worker_ids:
        indices, values = contributions(worker, counts[worker])
        exchange.put(Payload(torch.from_numpy(values), torch.from_numpy(indices)))
    out = torch.full((DIM,), float("nan"))
    stats = exchange.reduce(out)
    np.save(f"{out_dir}/sparse_{rank}.npy", out.numpy())
    np.save(f"{out_dir}/stats_{rank}.npy", np.array([stats.bytes_sent, stats.wire_bytes, stats.selected]))

    dense = DenseExchange(DIM, layout, torch.device("cpu"))
    for worker in layout.worker_ids:
        dense.put(Payload(torch.full((DIM,), float(worker))))
    dense_out = torch.empty(DIM)
    dense_stats = dense.reduce(dense_out)
    np.save(f"{out_dir}/dense_{rank}.npy", dense_out.numpy())
    assert dense_stats.bytes_sent == dense_bytes(DIM, layout.num_workers)


@pytest.mark.parametrize("nprocs, per_process", [(2, 1), (3, 1), (4, 1), (2, 3)])
@pytest.mark.parametrize("fixed", [True, False])
def test_sparse_exchange_equals_dense_average(tmp_path, nprocs, per_process, fixed):
    run_gloo(_exchange_worker, nprocs, per_process, fixed, str(tmp_path))
    workers = nprocs * per_process
    counts = counts_for(workers, fixed)
    expected = np.zeros(DIM, np.float64)
    for worker in range(workers):
        indices, values = contributions(worker, counts[worker])
        expected[indices] += values
    expected /= workers
    for rank in range(nprocs):
        got = np.load(tmp_path / f"sparse_{rank}.npy")
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
        bytes_sent, wire_bytes, selected = np.load(tmp_path / f"stats_{rank}.npy")
        assert selected == np.mean(counts)
        assert bytes_sent == 8 * np.mean(counts) + (0 if fixed else 4)
        assert wire_bytes == 8 * max(counts) + (0 if fixed else 4)
        dense = np.load(tmp_path / f"dense_{rank}.npy")
        np.testing.assert_allclose(dense, np.full(DIM, (workers - 1) / 2), rtol=1e-6)


def test_fixed_count_exchange_refuses_a_wrong_count():
    exchange = SparseExchange(DIM, 7, WorkerLayout.create(0, 1, 1), torch.device("cpu"), fixed_count=True)
    with pytest.raises(ValueError, match="k=7"):
        exchange.put(Payload(torch.zeros(3), torch.arange(3)))


def test_dense_bytes_is_the_ring_all_reduce_volume():
    assert dense_bytes(100, 20) == 2 * 19 / 20 * 400
    assert dense_bytes(100, 1) == 0


def _nobody_sends(rank, nprocs, out_dir):
    layout = WorkerLayout.create(rank, nprocs, nprocs)
    exchange = SparseExchange(DIM, 7, layout, torch.device("cpu"), fixed_count=False)
    exchange.put(Payload(torch.empty(0), torch.empty(0, dtype=torch.long)))
    out = torch.full((DIM,), float("nan"))
    stats = exchange.reduce(out)
    np.save(f"{out_dir}/{rank}.npy", np.append(out.numpy(), [stats.bytes_sent, stats.selected]))


def test_all_workers_sending_nothing_gives_zero(tmp_path):
    run_gloo(_nobody_sends, 2, str(tmp_path))
    for rank in range(2):
        got = np.load(tmp_path / f"{rank}.npy")
        assert np.array_equal(got, np.append(np.zeros(DIM), [4.0, 0.0]))
