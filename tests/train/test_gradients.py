"""``compressor.scope``: the flat exchange against DDP's bucket-by-bucket one, with real gloo
processes hosting several logical workers, and a per-bucket Top-k reference written from the
definition (k = floor(ratio * bucket size) of each bucket's |e + g|, error feedback per entry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from sparsetrain.compressors import Dense, TopK
from sparsetrain.layout import WorkerLayout
from sparsetrain.optim import FlatSGD
from sparsetrain.tasks.base import Task
from sparsetrain.tasks.flat_module import flatten_module
from sparsetrain.train.gradients import FlatGradients, OverlappedGradients, build_gradients
from tests.conftest import run_gloo

STEPS = 4
BUCKET_MB = 0.01  # ~2600 floats: the network below spreads over several buckets


class MLPTask(Task):
    """A small network whose worker w's batch at step s is drawn from (w, s) alone."""

    def __init__(self, layout: WorkerLayout, device: torch.device, seed: int) -> None:
        super().__init__(layout, device, seed)
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64),
                                   nn.Tanh(), nn.Linear(64, 1))
        self.flat = flatten_module(self.model)
        self.flat_params, self.flat_grad = self.flat.params, self.flat.grad

    def local_gradient(self, local_worker: int, step: int, accumulate: bool = False) -> torch.Tensor:
        gen = torch.Generator().manual_seed(1000 * self.layout.worker_ids[local_worker] + step)
        inputs = torch.randn(8, 16, generator=gen)
        if not accumulate:
            self.flat.release_grads()
        loss = nn.functional.mse_loss(self.model(inputs), inputs.sum(dim=1, keepdim=True).sin())
        loss.backward()
        self.flat.gather_grads()
        return loss.detach()


def _train(gradients, task: Task) -> list[np.ndarray]:
    optimizer = FlatSGD(task.flat_params, lr=0.1, momentum=0.9)
    aggregates = []
    for step in range(1, STEPS + 1):
        gradients(step)
        gradients.observe(task.flat_grad)
        aggregates.append(task.flat_grad.numpy().copy())
        optimizer.step(task.flat_grad)
    return aggregates


def _dense_both_ways(rank, nprocs, workers, out_dir):
    layout = WorkerLayout.create(rank, nprocs, workers)
    device = torch.device("cpu")
    flat_task = MLPTask(layout, device, seed=0)
    flat = FlatGradients(flat_task, [Dense(flat_task.dim) for _ in layout.worker_ids], "auto", layout, device)
    task = MLPTask(layout, device, seed=0)
    overlapped = OverlappedGradients(task, {"_target_": "sparsetrain.compressors.Dense"}, 1.0, "auto", layout, 0,
                                     device, bucket_mb=BUCKET_MB)
    np.save(f"{out_dir}/{rank}.npy", np.stack([np.stack(_train(flat, flat_task)), np.stack(_train(overlapped, task))]))
    chosen = build_gradients({"_target_": "sparsetrain.compressors.Dense", "scope": "bucket"}, 1.0, "auto",
                             MLPTask(layout, device, seed=0), layout, 0, device)
    assert isinstance(chosen, OverlappedGradients) and chosen.k == task.dim
    if rank == 0:
        np.save(f"{out_dir}/buckets.npy", np.array(overlapped.state.last_step["dense_buckets"]))


@pytest.mark.parametrize("workers", [4, 6], ids=["P=4", "P=6"])
def test_dense_per_bucket_gives_the_flat_aggregate_bit_for_bit(tmp_path, workers):
    """2 processes hosting 2 or 3 workers each: the hosted workers' gradients are summed in worker
    order, each bucket all-reduced (2 processes: one addition per entry, in either order) and then
    divided by P, as the flat exchange does with the whole gradient: the same bits, every step."""
    run_gloo(_dense_both_ways, 2, workers, str(tmp_path))
    assert int(np.load(tmp_path / "buckets.npy")) >= 3
    runs = [np.load(tmp_path / f"{rank}.npy") for rank in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])  # every process holds the same aggregate
    flat, overlapped = runs[0]
    np.testing.assert_array_equal(overlapped, flat)


def _topk_per_bucket(rank, nprocs, ratio, out_dir):
    layout = WorkerLayout.create(rank, nprocs, None)
    device = torch.device("cpu")
    task = MLPTask(layout, device, seed=0)
    reference = MLPTask(layout, device, seed=0)  # plain autograd, no DDP: each rank's own gradient
    gradients = OverlappedGradients(task, {"_target_": "sparsetrain.compressors.TopK", "scope": "bucket"}, ratio,
                                    "allgather", layout, 0, device, bucket_mb=BUCKET_MB)
    names = [name for name, _ in reference.model.named_parameters()]
    residual = {name: torch.zeros_like(p).reshape(-1) for name, p in reference.model.named_parameters()}
    worst, timings = 0.0, []
    for step in range(1, STEPS + 1):
        reference.flat_params.copy_(task.flat_params)
        reference.local_gradient(0, step)
        result = gradients(step)
        timings.append((result.select_ms, result.comm_ms, result.comm_total_ms))
        mine = {name: p.grad.reshape(-1).clone() for name, p in reference.model.named_parameters()}
        both = [torch.zeros(reference.dim) for _ in range(nprocs)]
        dist.all_gather(both, torch.cat([mine[n] for n in names]))
        grads = [dict(zip(names, g.split([residual[n].numel() for n in names]))) for g in both]
        residuals = [{n: t.clone() for n, t in residual.items()} for _ in range(nprocs)]
        dist.all_gather_object(residuals, residual)
        expected = {name: torch.zeros_like(r) for name, r in residual.items()}
        selected = 0
        for layout_, _ in gradients.state.compressors.values():  # this step's buckets
            sizes = list(layout_.sizes)
            k = max(1, math.floor(ratio * sum(sizes)))
            selected += k
            for worker in range(nprocs):
                acc = torch.cat([residuals[worker][n] + grads[worker][n] for n in layout_.names])
                sent = torch.zeros_like(acc)
                top = acc.abs().topk(k).indices
                sent[top] = acc[top]
                for name, part_sent, part_acc in zip(layout_.names, sent.split(sizes), acc.split(sizes)):
                    expected[name] += part_sent
                    if worker == rank:
                        residual[name] = part_acc - part_sent
        assert result.stats.selected == selected
        for name, p in task.model.module.named_parameters():
            worst = max(worst, float((p.grad.reshape(-1) - expected[name] / nprocs).abs().max()))
        gradients.observe(task.flat_grad)
        task.flat_params.sub_(0.1 * task.flat_grad)
    np.save(f"{out_dir}/{rank}.npy", np.array([worst, len(gradients.state.compressors), *np.ravel(timings)]))


def test_topk_per_bucket_selects_each_buckets_k_largest(tmp_path):
    """Each bucket sends floor(ratio * its size) entries of its own |e + g|, the rest stays in the
    residual, and the average of what the 2 workers sent is the aggregate."""
    run_gloo(_topk_per_bucket, 2, 0.05, str(tmp_path))
    for rank in range(2):
        worst, buckets, *timings = np.load(tmp_path / f"{rank}.npy")
        assert worst <= 1e-7 and buckets >= 1
        for select_ms, comm_ms, comm_total_ms in np.reshape(timings, (-1, 3)):
            assert select_ms > 0 and 0 <= comm_ms <= comm_total_ms


def test_flat_when_there_is_nothing_to_overlap():
    """One process, or a task without a network: the flat path, whatever the scope."""
    layout = WorkerLayout.create(0, 1, 2)
    task = MLPTask(layout, torch.device("cpu"), seed=0)
    gradients = build_gradients({"_target_": "sparsetrain.compressors.Dense", "scope": "bucket"}, 1.0, "auto", task,
                                layout, 0, torch.device("cpu"))
    assert isinstance(gradients, FlatGradients) and gradients.k == task.dim
    assert isinstance(task.model, nn.Sequential)  # not wrapped
    assert isinstance(gradients.all_compressors()[1], Dense) and len(gradients.all_compressors()) == 2
    topk = build_gradients({"_target_": "sparsetrain.compressors.TopK"}, 0.1, "auto", task, layout, 0,
                           torch.device("cpu"))
    assert isinstance(topk.all_compressors()[0], TopK) and topk.k == math.floor(0.1 * task.dim)
