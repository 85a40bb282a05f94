"""The exchange with real gloo workers: the aggregate against a dense average computed
independently (numpy), and the traffic against the ring formulas written out here."""

import numpy as np
import pytest
import torch

from sparsetrain.compressors import Payload
from sparsetrain.exchange import DenseExchange, SparseExchange
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


def _exchange_worker(rank, nprocs, per_process, fixed, mode, out_dir, value_dtype="float32"):
    layout = WorkerLayout.create(rank, nprocs, nprocs * per_process)
    counts = counts_for(layout.num_workers, fixed)
    dtype = getattr(torch, value_dtype)
    exchange = SparseExchange(DIM, 7, layout, torch.device("cpu"), fixed_count=fixed, mode=mode, value_dtype=dtype)
    for worker in layout.worker_ids:
        indices, values = contributions(worker, counts[worker])
        exchange.put(Payload(torch.from_numpy(values).to(dtype), torch.from_numpy(indices)))
    out = torch.full((DIM,), float("nan"))
    stats = exchange.reduce(out)
    np.save(f"{out_dir}/sparse_{rank}.npy", out.numpy())
    np.save(f"{out_dir}/stats_{rank}.npy", np.array([stats.bytes_sent, stats.bytes_received, stats.payload_bytes,
                                                     stats.selected, stats.summed]))
    dense = DenseExchange(DIM, layout, torch.device("cpu"))
    for worker in layout.worker_ids:
        dense.put(Payload(torch.full((DIM,), float(worker))))
    dense_out = torch.empty(DIM)
    dense_stats = dense.reduce(dense_out)
    np.save(f"{out_dir}/dense_{rank}.npy", np.append(dense_out.numpy(), dense_stats.bytes_sent))


def ring_allgather(each: float, workers: int) -> float:
    return (workers - 1) * each


def ring_allreduce(nbytes: float, workers: int) -> float:
    return 2 * (workers - 1) / workers * nbytes


@pytest.mark.parametrize("mode", ["allgather", "allreduce", "auto"])
@pytest.mark.parametrize("nprocs, per_process", [(2, 1), (3, 1), (4, 1), (2, 3)])
@pytest.mark.parametrize("fixed", [True, False])
def test_sparse_exchange_equals_dense_average_and_counts_the_wire(tmp_path, nprocs, per_process, fixed, mode):
    run_gloo(_exchange_worker, nprocs, per_process, fixed, mode, str(tmp_path))
    workers = nprocs * per_process
    counts = counts_for(workers, fixed)
    expected = np.zeros(DIM, np.float64)
    for worker in range(workers):
        indices, values = contributions(worker, counts[worker])
        expected[indices] += values
    expected /= workers
    gather_bytes = ring_allgather(8 * max(counts), workers)
    reduce_bytes = ring_allreduce(4 * DIM, workers)
    summed = mode == "allreduce" or (mode == "auto" and reduce_bytes < gather_bytes)
    header = 0 if fixed else ring_allgather(4, workers)  # the counts travel first
    for rank in range(nprocs):
        got = np.load(tmp_path / f"sparse_{rank}.npy")
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
        sent, received, payload, selected, was_summed = np.load(tmp_path / f"stats_{rank}.npy")
        assert bool(was_summed) == summed
        assert sent == received == header + (reduce_bytes if summed else gather_bytes)
        assert payload == 8 * np.mean(counts) + (0 if fixed else 4) and selected == np.mean(counts)
        dense = np.load(tmp_path / f"dense_{rank}.npy")
        np.testing.assert_allclose(dense[:DIM], np.full(DIM, (workers - 1) / 2), rtol=1e-6)
        assert dense[DIM] == reduce_bytes
    if mode == "auto":  # 8 x 7 bytes gathered beat 2/P x 200 reduced for P < 7.1; 9 entries for P < 5.6
        assert summed == (not fixed and workers == 6)


def _both_paths(rank, nprocs, out_dir):
    layout = WorkerLayout.create(rank, nprocs, nprocs)
    for mode in ("allgather", "allreduce"):
        exchange = SparseExchange(DIM, 30, layout, torch.device("cpu"), fixed_count=True, mode=mode)
        indices, values = contributions(rank, 30)  # 2 x 30 of 50 entries: they overlap
        exchange.put(Payload(torch.from_numpy(values * 1e3), torch.from_numpy(indices)))
        out = torch.empty(DIM)
        exchange.reduce(out)
        np.save(f"{out_dir}/{mode}_{rank}.npy", out.numpy())


@pytest.mark.parametrize("nprocs", [2, 4])
def test_summing_densely_gives_the_gathered_aggregate(tmp_path, nprocs):
    """Bit for bit with 2 workers (one float32 addition per entry, commutative); to float32
    rounding with 4, where the ring all-reduce associates the sums differently."""
    run_gloo(_both_paths, nprocs, str(tmp_path))
    gathered, summed = (np.load(tmp_path / f"{mode}_0.npy") for mode in ("allgather", "allreduce"))
    if nprocs == 2:
        assert np.array_equal(gathered, summed)
    else:
        np.testing.assert_allclose(summed, gathered, rtol=4 * np.finfo(np.float32).eps, atol=0)


def test_fixed_count_exchange_refuses_a_wrong_count():
    exchange = SparseExchange(DIM, 7, WorkerLayout.create(0, 1, 1), torch.device("cpu"), fixed_count=True)
    with pytest.raises(ValueError, match="k=7"):
        exchange.put(Payload(torch.zeros(3), torch.arange(3)))


def _nobody_sends(rank, nprocs, out_dir):
    layout = WorkerLayout.create(rank, nprocs, nprocs)
    exchange = SparseExchange(DIM, 7, layout, torch.device("cpu"), fixed_count=False, mode="allgather")
    exchange.put(Payload(torch.empty(0), torch.empty(0, dtype=torch.long)))
    out = torch.full((DIM,), float("nan"))
    stats = exchange.reduce(out)
    np.save(f"{out_dir}/{rank}.npy", np.append(out.numpy(), [stats.bytes_sent, stats.payload_bytes, stats.selected]))


def test_all_workers_sending_nothing_gives_zero(tmp_path):
    run_gloo(_nobody_sends, 2, str(tmp_path))
    for rank in range(2):
        got = np.load(tmp_path / f"{rank}.npy")
        assert np.array_equal(got, np.append(np.zeros(DIM), [4.0, 4.0, 0.0]))  # only the counts travelled


@pytest.mark.parametrize("value_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("mode", ["allgather", "allreduce"])
@pytest.mark.parametrize("fixed", [True, False])
def test_half_precision_values_travel_in_six_bytes_an_entry(tmp_path, value_dtype, mode, fixed):
    """3 workers; the rows hold int32 indices, then 2-byte values padded to whole int32s."""
    run_gloo(_exchange_worker, 3, 1, fixed, mode, str(tmp_path), value_dtype)
    counts = counts_for(3, fixed)
    expected = np.zeros(DIM, np.float64)
    for worker in range(3):
        indices, values = contributions(worker, counts[worker])
        expected[indices] += torch.from_numpy(values).to(getattr(torch, value_dtype)).double().numpy()
    expected /= 3
    width = max(counts)
    row = 4 * width + 4 * -(-2 * width // 4)
    header = 0 if fixed else ring_allgather(4, 3)
    for rank in range(3):
        np.testing.assert_allclose(np.load(tmp_path / f"sparse_{rank}.npy"), expected, rtol=1e-6, atol=1e-7)
        sent, _, payload, _, _ = np.load(tmp_path / f"stats_{rank}.npy")
        assert sent == header + (ring_allreduce(4 * DIM, 3) if mode == "allreduce" else ring_allgather(row, 3))
        assert payload == 6 * np.mean(counts) + (0 if fixed else 4)
