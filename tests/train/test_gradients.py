"""``compressor.scope``: the flat exchange against the bucket-by-bucket one, with real gloo
processes hosting several logical workers, the buckets' plan worked out by hand, and a per-bucket
Top-k reference written from the definition (k = floor(ratio * bucket size) of each bucket's
|e + g|, error feedback per entry)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

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
from sparsetrain.train.gradients import Bucket, FlatGradients, OverlappedGradients, build_gradients, plan_buckets
from tests.conftest import run_gloo

STEPS = 4
BUCKET_MB = 0.01  # ~2600 floats: the network below spreads over several buckets


class Scrambled(nn.Module):
    """The MLP's layers registered last to first: backward fills them in the order of
    ``parameters()``, the opposite of what :func:`plan_buckets` expects."""

    def __init__(self) -> None:
        super().__init__()
        self.head, self.middle, self.stem = nn.Linear(64, 1), nn.Linear(64, 64), nn.Linear(16, 64)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.middle(torch.tanh(self.stem(inputs)))))


class Unused(nn.Module):
    """A layer that never takes part: backward gives its parameters no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Linear(16, 1), nn.Linear(16, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.used(inputs)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 1))


class MLPTask(Task):
    """A small network whose worker w's batch at step s is drawn from (w, s) alone."""

    def __init__(self, layout: WorkerLayout, device: torch.device, seed: int, network=mlp) -> None:
        super().__init__(layout, device, seed)
        torch.manual_seed(seed)
        self.model = network()
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


def test_buckets_are_whole_parameters_cut_from_each_regions_end_in_backwards_order():
    """The MLP's flat buffers: weights 1024, 4096, 4096, 64 entries (offsets 0, 1024, 5120, 9216),
    then biases 64, 64, 64, 1 (offsets 9280, 9344, 9408, 9472). Each region is cut from its end:
    the first bucket closes at 100 entries or more ([w3 w4]: 4160; [b2 b3 b4]: 129), the others at
    2621 ([w2]: 4096) or at the region's start ([w1], [b1]). A bucket is due when backward reaches
    its first layer (module order w1 b1 w2 b2 w3 b3 w4 b4): [w3 w4] at w3, [b2 b3 b4] at b2, [w2],
    [b1], [w1] last."""
    flat = flatten_module(mlp())
    order = {id(p): i for i, p in enumerate(flat.parameters)}  # flat order: w1 w2 w3 w4 b1 b2 b3 b4
    module_order = [[0, 2, 4, 6, 1, 3, 5, 7][order[id(p)]] for p in flat.parameters]
    assert plan_buckets(flat, module_order, cap=2621, first_cap=100) == [
        Bucket(5120, 9280, 2, 4), Bucket(9344, 9473, 5, 8), Bucket(1024, 5120, 1, 2), Bucket(9280, 9344, 4, 5),
        Bucket(0, 1024, 0, 1),
    ]
    assert plan_buckets(flat, module_order, cap=10**6, first_cap=10**6) == [
        Bucket(9280, 9473, 4, 8), Bucket(0, 9280, 0, 4),
    ]


def _train(gradients, task: Task) -> list[np.ndarray]:
    optimizer = FlatSGD(task.flat_params, lr=0.1, momentum=0.9)
    aggregates = []
    for step in range(1, STEPS + 1):
        gradients(step)
        gradients.observe(task.flat_grad)
        aggregates.append(task.flat_grad.numpy().copy())
        optimizer.step(task.flat_grad)
    return aggregates


def _dense_both_ways(rank, nprocs, workers, network, out_dir):
    layout = WorkerLayout.create(rank, nprocs, workers)
    device = torch.device("cpu")
    flat_task = MLPTask(layout, device, seed=0, network=network)
    flat = FlatGradients(flat_task, [Dense(flat_task.dim) for _ in layout.worker_ids], "auto", layout, device)
    task = MLPTask(layout, device, seed=0, network=network)
    overlapped = OverlappedGradients(task, {"_target_": "sparsetrain.compressors.Dense", "bucket_mb": BUCKET_MB},
                                     1.0, "auto", layout, 0, device)
    np.save(f"{out_dir}/{rank}.npy", np.stack([np.stack(_train(flat, flat_task)), np.stack(_train(overlapped, task))]))
    chosen = build_gradients({"_target_": "sparsetrain.compressors.Dense", "scope": "bucket"}, 1.0, "auto",
                             MLPTask(layout, device, seed=0, network=network), layout, 0, device)
    assert isinstance(chosen, OverlappedGradients) and chosen.k == task.dim
    if rank == 0:
        np.save(f"{out_dir}/buckets.npy", np.array(len(overlapped.buckets)))


@pytest.mark.parametrize(("workers", "network"), [(4, mlp), (6, mlp), (4, Scrambled)],
                         ids=["P=4", "P=6", "P=4-scrambled"])
def test_dense_per_bucket_gives_the_flat_aggregate_bit_for_bit(tmp_path, workers, network):
    """2 processes hosting 2 or 3 workers each: the hosted workers' gradients are summed in worker
    order, each bucket all-reduced (2 processes: one addition per entry, in either order) and then
    divided by P, as the flat exchange does with the whole gradient: the same bits, every step;
    also when backward fills the buckets in another order than the plan's (they wait their turn)."""
    run_gloo(_dense_both_ways, 2, workers, network, str(tmp_path))
    assert int(np.load(tmp_path / "buckets.npy")) >= 3
    runs = [np.load(tmp_path / f"{rank}.npy") for rank in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])  # every process holds the same aggregate
    flat, overlapped = runs[0]
    np.testing.assert_array_equal(overlapped, flat)


class CountedTopK(TopK):
    """Top-k counting how it was handed each step's gradient: added into its residual during
    backward already, or to add now (through :meth:`compress`)."""

    ways: ClassVar[dict[str, int]] = {"in residual": 0, "to add": 0}

    def compress_accumulated(self, step, add=None):
        CountedTopK.ways["in residual" if add is None else "to add"] += 1
        return super().compress_accumulated(step, add)


class GivenGradientTopK(CountedTopK):
    """A compressor that overrides :meth:`compress` (as DGC does) is handed the gradient through it."""

    def compress(self, grad, step):
        return super().compress(grad, step)


def _topk_per_bucket(rank, nprocs, ratio, target, out_dir):
    layout = WorkerLayout.create(rank, nprocs, None)
    device = torch.device("cpu")
    task = MLPTask(layout, device, seed=0)
    reference = MLPTask(layout, device, seed=0)  # plain autograd: each rank's own gradient
    gradients = OverlappedGradients(task, {"_target_": target, "scope": "bucket", "bucket_mb": BUCKET_MB},
                                    ratio, "allgather", layout, 0, device)
    residual = torch.zeros(task.dim)
    worst, timings = 0.0, []
    for step in range(1, STEPS + 1):
        reference.flat_params.copy_(task.flat_params)
        reference.local_gradient(0, step)
        result = gradients(step)
        timings.append((result.select_ms, result.comm_ms, result.comm_total_ms))
        grads = [torch.zeros(task.dim) for _ in range(nprocs)]
        residuals = [torch.zeros(task.dim) for _ in range(nprocs)]
        dist.all_gather(grads, reference.flat_grad)
        dist.all_gather(residuals, residual)
        expected, selected = torch.zeros(task.dim), 0
        for bucket in gradients.buckets:
            part = slice(bucket.start, bucket.end)
            k = max(1, math.floor(ratio * bucket.size))
            selected += k
            for worker in range(nprocs):
                acc = residuals[worker][part] + grads[worker][part]
                sent = torch.zeros_like(acc)
                top = acc.abs().topk(k).indices
                sent[top] = acc[top]
                expected[part] += sent
                if worker == rank:
                    residual[part] = acc - sent
        assert result.stats.selected == selected
        worst = max(worst, float((task.flat_grad - expected / nprocs).abs().max()))
        gradients.observe(task.flat_grad)
        task.flat_params.sub_(0.1 * task.flat_grad)
    ways = CountedTopK.ways
    np.save(f"{out_dir}/{rank}.npy", np.array([worst, len(gradients.buckets), ways["in residual"],
                                               ways["to add"], *np.ravel(timings)]))


@pytest.mark.parametrize(("target", "in_residual"), [("CountedTopK", True), ("GivenGradientTopK", False)])
def test_topk_per_bucket_selects_each_buckets_k_largest(tmp_path, target, in_residual):
    """Each bucket sends floor(ratio * its size) entries of its own |e + g|, the rest stays in the
    residual, and the average of what the 2 workers sent is the aggregate: whether backward adds
    each gradient into the bucket's residual (Top-k's own compress) or the compressor is handed
    the bucket's gradient (a compress of its own)."""
    run_gloo(_topk_per_bucket, 2, 0.05, f"{__name__}.{target}", str(tmp_path))
    for rank in range(2):
        worst, buckets, in_residual_calls, to_add_calls, *timings = np.load(tmp_path / f"{rank}.npy")
        assert worst <= 1e-7 and buckets == 4
        calls = STEPS * buckets
        assert (in_residual_calls, to_add_calls) == ((calls, 0) if in_residual else (0, calls))
        for select_ms, comm_ms, comm_total_ms in np.reshape(timings, (-1, 3)):
            assert select_ms > 0 and 0 <= comm_ms <= comm_total_ms


def _unfilled(rank, nprocs, out_dir):
    layout = WorkerLayout.create(rank, nprocs, None)
    task = MLPTask(layout, torch.device("cpu"), seed=0, network=Unused)
    gradients = OverlappedGradients(task, {"_target_": "sparsetrain.compressors.Dense", "bucket_mb": BUCKET_MB},
                                    1.0, "auto", layout, 0, torch.device("cpu"))
    with pytest.raises(RuntimeError) as error:
        gradients(1)
    (Path(out_dir) / f"{rank}.txt").write_text(str(error.value))


def test_a_parameter_without_gradient_stops_the_step(tmp_path):
    """Its bucket is never full: the step stops, naming the parameter, rather than exchange a stale
    gradient."""
    run_gloo(_unfilled, 2, str(tmp_path))
    for rank in range(2):
        assert (tmp_path / f"{rank}.txt").read_text().startswith(
            "backward gave unused.bias no gradient, so bucket 0 never filled")  # the biases' bucket goes first


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
