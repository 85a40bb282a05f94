"""From the hosted workers' batches to the averaged gradient ``gbar`` in ``task.flat_grad``.

Two ways, chosen by ``compressor.scope`` (:func:`build_gradients`):

* :class:`FlatGradients` (``scope=model``, the sparse compressors' default): each hosted worker's
  whole gradient is compressed (error feedback inside), then one exchange averages the payloads
  (:mod:`sparsetrain.exchange`). This is the papers' selection: k of all d entries, chosen once
  backward has finished, so the exchange waits for the whole of backward.
* :class:`OverlappedGradients` (``scope=bucket``, dense's default): the task's network runs under
  ``DistributedDataParallel`` with sparsetrain's hook (:mod:`sparsetrain.ddp`), and each gradient
  bucket (DDP's 25 MB, plus a 1 MB first one) is exchanged as soon as backward has filled it,
  while backward goes on with the rest, as plain DDP does. A sparse compressor selects per bucket,
  with its own residual and ``k = floor(ratio * bucket size)``: the same density, but the k
  largest of each bucket rather than of the model, a different selection from the papers'.

Dense gives the same aggregate either way. Hosted workers before the last accumulate their
gradients under ``no_sync`` (the same float32 sum, in worker order, as the flat exchange); each
bucket is then all-reduced and divided by P, as the flat exchange does with the whole gradient:
bit for bit the same with 2 processes (one addition per entry), and otherwise as far as the
collective sums a bucket's entries in the order it sums the whole gradient's. A sparse
bucket is one worker's gradient, so ``scope=bucket`` with a sparse compressor needs one logical
worker per process. A task without a network (linear regression's closed-form gradient) or a job
of one process has nothing to overlap, and runs flat.

Timings per process (ms): ``select_ms`` (compression), ``comm_ms`` (the exchange nobody hid: all
of it when flat; when overlapped, from the end of backward's computing to the last collective's
completion) and ``comm_total_ms`` (the time some collective was in flight), so ``comm_ms <=
comm_total_ms``, equal when flat.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from sparsetrain.collectives import completed
from sparsetrain.components import build
from sparsetrain.compressors.base import Compressor
from sparsetrain.ddp import SparseState, sparse_hook
from sparsetrain.exchange import CommStats, build_exchange
from sparsetrain.layout import WorkerLayout
from sparsetrain.tasks.base import Task
from sparsetrain.timing import Stopwatch

__all__ = ["Gradients", "FlatGradients", "OverlappedGradients", "build_gradients"]

_DDP_SIGNATURE = inspect.signature(DistributedDataParallel.__init__).parameters
_NO_SYNC = {
    **({"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_SIGNATURE else {"broadcast_buffers": False}),
    **({"init_sync": False} if "init_sync" in _DDP_SIGNATURE else {}),
}
"""DDP exchanges gradients only. Each process keeps its own batch-norm statistics, as on the flat
path (the task averages them before evaluating; torch 2.14 renamed the switch), and the model is
not broadcast at construction: every process built the same one from the seed, and a broadcast
would be traffic the step accounting does not see."""


@dataclass
class Gradients:
    """One step's result: the hosted workers' summed loss, the traffic, the timings (ms), and the
    compressors' own statistics summed over this process's workers (``stat_names``)."""

    loss_sum: torch.Tensor
    stats: CommStats
    select_ms: float
    comm_ms: float
    comm_total_ms: float
    compressor_sums: tuple[float, ...]


class FlatGradients:
    """Whole-model compression per hosted worker, then one exchange (``scope=model``)."""

    def __init__(self, task: Task, compressors: list[Compressor], exchange_mode: str, layout: WorkerLayout,
                 device: torch.device) -> None:
        self.task, self.compressors, self.device = task, compressors, device
        self.exchange = build_exchange(type(compressors[0]), task.dim, compressors[0].k, layout, device,
                                       mode=exchange_mode,
                                       value_dtype=getattr(compressors[0], "value_dtype", torch.float32))
        self.dense = self.exchange.dense
        self.select_watch, self.comm_watch = Stopwatch(device), Stopwatch(device)

    def __call__(self, step: int) -> Gradients:
        self.select_watch.reset()
        self.comm_watch.reset()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for local, compressor in enumerate(self.compressors):
            loss_sum += self.task.local_gradient(local, step).detach()
            with self.select_watch:
                self.exchange.put(compressor.compress(self.task.flat_grad, step))
        with self.comm_watch:  # the average over all workers replaces the local gradient in place
            stats = self.exchange.reduce(out=self.task.flat_grad)
        sums = tuple(map(sum, zip(*(c.stats() for c in self.compressors))))
        return Gradients(loss_sum, stats, self.select_watch.ms, self.comm_watch.ms, self.comm_watch.ms, sums)

    @property
    def stat_names(self) -> tuple[str, ...]:
        return type(self.compressors[0]).stat_names

    def observe(self, gbar: torch.Tensor) -> None:
        for compressor in self.compressors:
            compressor.observe(gbar)

    @property
    def k(self) -> int:
        """Entries one worker sends per step (d for dense)."""
        return self.compressors[0].k

    def set_ratio(self, ratio: float) -> None:
        for compressor in self.compressors:
            compressor.set_ratio(ratio)
        self.exchange.k = self.compressors[0].k

    def all_compressors(self) -> list[Compressor]:
        return self.compressors

    def state_dict(self) -> list[dict[str, Any]]:
        return [c.state_dict() for c in self.compressors]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for compressor, state in zip(self.compressors, states, strict=True):
            compressor.load_state_dict(state)


class OverlappedGradients:
    """The task's network under DDP, each bucket exchanged as backward fills it (``scope=bucket``).

    The hook's compressors see their bucket's aggregate as it arrives (:meth:`observe` has nothing
    left to do), before the trainer's guards look at the whole of it: a step that
    ``train.nonfinite=skip`` drops has updated the memory of the buckets that stayed finite.
    """

    def __init__(self, task: Task, compressor: dict[str, Any], ratio: float, exchange_mode: str,
                 layout: WorkerLayout, seed: int, device: torch.device, bucket_mb: float = 25.0) -> None:
        assert task.model is not None and layout.processes > 1
        options = {key: value for key, value in compressor.items() if key != "_target_"}
        self.state = SparseState(
            compressor["_target_"], ratio, exchange=exchange_mode, seed=seed, min_compression_rate=0,
            num_workers=layout.num_workers, model=task.model, **options,
        )
        self.dense = self.state.compressor_cls.dense
        self.task, self.layout, self.device = task, layout, device
        # Gradients as views of the buckets would spare DDP's copy out of them, yet measured 5 to 8%
        # slower per ResNet-18 forward and backward (one CPU thread, batch 32, two runs).
        task.model = DistributedDataParallel(
            task.model, gradient_as_bucket_view=False, bucket_cap_mb=bucket_mb, **_NO_SYNC,
            device_ids=[device] if device.type == "cuda" else None,
        )
        self._rehearsing = True
        task.model.register_comm_hook(self.state, self._hook)
        self._rehearse()

    def _hook(self, state, bucket):  # unannotated: DDP checks annotations as objects, and here they are strings
        """:func:`~sparsetrain.ddp.sparse_hook`, or during :meth:`_rehearse` nothing at all."""
        return completed(bucket.buffer()) if self._rehearsing else sparse_hook(state, bucket)

    def _rehearse(self) -> None:
        """One forward and backward that changes nothing and exchanges nothing, so that DDP
        rebuilds its buckets (in the order gradients become ready) before the first real step.
        Every step, of a fresh run or of a resumed one, then sees the same buckets, and a sparse
        compressor's per-bucket selection resumes exactly."""
        buffers = [b.clone() for b in self.task.model.buffers()]
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            self.task.local_gradient(0, 1)
        with torch.no_grad():
            for buffer, saved in zip(self.task.model.buffers(), buffers):
                buffer.copy_(saved)
        self.task.flat_grad.zero_()
        self._rehearsing = False

    def __call__(self, step: int) -> Gradients:
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        last = self.layout.workers_per_process - 1
        for local in range(last + 1):
            with self.task.model.no_sync() if local < last else contextlib.nullcontext():
                loss_sum += self.task.local_gradient(local, step, accumulate=local > 0).detach()
        timing = self.state.timer.finish()  # backward has waited for every bucket's collective
        live = self.state.live_compressors()  # a sparse bucket is its process's one worker's
        means = tuple(sum(column) / len(live) for column in zip(*(c.stats() for c in live)))
        return Gradients(loss_sum, self.state.last_comm, timing.select_ms, timing.exposed_ms, timing.busy_ms, means)

    @property
    def stat_names(self) -> tuple[str, ...]:
        """A compressor's statistics, averaged over the buckets."""
        return self.state.compressor_cls.stat_names

    def observe(self, gbar: torch.Tensor) -> None:
        """Done by the hook, bucket by bucket."""

    def set_ratio(self, ratio: float) -> None:
        self.state.set_ratio(ratio)

    @property
    def k(self) -> int:
        """Entries one worker sends per step: the buckets' k summed (d for dense)."""
        return self.task.dim if self.dense else sum(c.k for c in self.all_compressors())

    def all_compressors(self) -> list[Compressor]:
        return self.state.live_compressors()

    def state_dict(self) -> list[dict[str, Any]]:
        return [self.state.state_dict()]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        (state,) = states
        self.state.load_state_dict(state)


def build_gradients(
    compressor: dict[str, Any], ratio: float, exchange_mode: str, task: Task, layout: WorkerLayout, seed: int,
    device: torch.device,
) -> FlatGradients | OverlappedGradients:
    """The way ``compressor.scope`` asks for, where the task and the job allow it (see the module)."""
    if compressor.get("scope") == "bucket" and task.model is not None and layout.processes > 1:
        return OverlappedGradients(task, compressor, ratio, exchange_mode, layout, seed, device)
    compressors = [
        build(compressor, dim=task.dim, ratio=ratio, worker=worker, num_workers=layout.num_workers, seed=seed,
              device=device)
        for worker in layout.worker_ids
    ]
    return FlatGradients(task, compressors, exchange_mode, layout, device)
