"""The shaped link: really slower, counted as the wire counts it, refused with one line where it
cannot run. Every test here runs inside its own network namespace and stops by itself."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sparsetrain.launch import free_port
from sparsetrain.net import shaping
from tests.conftest import load_run, sparsetrain



@pytest.fixture
def needs_shaping():
    """Skip where this machine cannot shape (probed here, not at import: the probe starts a
    process, which the workers importing this module must not do)."""
    if shaping.unavailable() is not None:
        pytest.skip(f"no shaping here: {shaping.unavailable()}")


def _all_reduce(rank, nprocs, port, numel, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=nprocs)
    tensor = torch.ones(numel)
    dist.all_reduce(tensor)
    dist.barrier()
    started = time.perf_counter()
    dist.all_reduce(tensor)
    dist.barrier()
    if rank == 0:
        queue.put(time.perf_counter() - started)
    dist.destroy_process_group()


def _timed_all_reduce(nprocs: int, numel: int) -> float:
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_all_reduce, args=(nprocs, free_port(), numel, queue), nprocs=nprocs, start_method="spawn")
    return queue.get()


@pytest.mark.parametrize("hosts", [2, 3])
def test_a_collective_takes_the_time_of_its_bytes_on_each_hosts_link(needs_shaping, hosts):
    """5 MB all-reduced by each of `hosts` processes at 200 Mbit/s per host: every host sends
    2 (P-1)/P x 5 MB, which takes 0.2 s at P=2, 0.27 s at P=3. The shared bucket (P x 200 Mbit/s)
    must give that, not P times faster or slower."""
    numel = 1_250_000
    seconds, carried = shaping.run_shaped(_timed_all_reduce, hosts, numel, rate_bits=200e6, hosts=hosts)
    expected = 2 * (hosts - 1) / hosts * 4 * numel * 8 / 200e6
    assert 0.8 * expected < seconds < 3 * expected, (seconds, expected)
    assert carried >= 2 * hosts * 2 * (hosts - 1) / hosts * 4 * numel  # two all-reduces went over the loopback


@pytest.mark.parametrize("compressor", ["dense", "topk", "gaussiank"])
def test_the_reported_wire_bytes_are_what_the_loopback_carried(needs_shaping, tmp_path, compressor):
    """ResNet-18 (d = 11.2M) on 2 processes, one worker each, on a 10 Gbit/s link of its own: the
    namespace's loopback counts only this job. Beyond the reported bytes it carries the
    rendezvous store's traffic, gloo's connection set-up, barriers, the metric rows' and
    batch-norm buffers' all-reduces and TCP/IP headers: measured 0.5% (dense, 268 MB), 1.0%
    (topk, 27 MB) and 1.6% (gaussiank, 27 MB), some 0.3 MB; bounded here at 5%. Ratio 0.05 keeps
    the sparse runs' traffic large enough that a loaded machine's extra TCP segments stay small
    beside it (at 0.01, 4.6 MB, they once reached 6.9%)."""
    run_dir = tmp_path / compressor
    sparsetrain(run_dir, "+experiment=smoke", "task.synthetic=true", "task.synthetic_samples=64", "train.steps=3",
                f"compressor={compressor}", "ratio=0.05", "net.bandwidth=10gbit", "log.tensorboard=false")
    records, summary = load_run(run_dir)
    reported = summary["comm/bytes_total"]
    assert reported == sum(2 * r["comm/bytes_sent"] for r in records)
    carried = summary["loopback_bytes"]
    assert reported < carried < 1.05 * reported, (carried, reported)


def test_bad_rates_and_where_shaping_cannot_run_are_one_line(tmp_path):
    refused = sparsetrain(tmp_path / "run", "task=linreg", "net.bandwidth=fast", check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "sparsetrain: error: net.bandwidth='fast' is not allowed: use a rate like 1gbit, 100mbit or 2.5gbit "
        "(bits per second, tc's units)"
    )
    no_tc = sparsetrain(tmp_path / "run", "task=linreg", "net.bandwidth=1gbit", check=False,
                        env={"PATH": os.path.dirname(os.path.realpath(os.sys.executable))})
    assert no_tc.returncode == 2, no_tc.stderr
    assert no_tc.stderr.startswith("sparsetrain: error: net.bandwidth=1gbit cannot shape a link here: it needs ip")
    assert not (tmp_path / "run").exists()

