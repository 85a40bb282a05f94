"""From the hosted workers' batches to the averaged gradient ``gbar`` in ``task.flat_grad``.

Two ways, chosen by ``compressor.scope`` (:func:`build_gradients`):

* :class:`FlatGradients` (``scope=model``, the sparse compressors' default): each hosted worker's
  whole gradient is compressed (error feedback inside), then one exchange averages the payloads
  (:mod:`sparsetrain.exchange`). This is the papers' selection: k of all d entries, chosen once
  backward has finished, so the exchange waits for the whole of backward.
* :class:`OverlappedGradients` (``scope=bucket``, dense's default): the flat gradient is cut into
  buckets of whole parameters (``compressor.bucket_mb``, 25 MB, and a first 1 MB,
  :func:`plan_buckets`), and each is exchanged as soon as backward has filled it, while backward
  goes on with the rest, as PyTorch DDP does with its all-reduce. A sparse compressor selects per
  bucket, with its own residual and ``k = floor(ratio * bucket size)``: the same density, but the
  k largest of each bucket rather than of the model, a different selection from the papers'.

Dense gives the same aggregate either way. Hosted workers before the last add their gradients up
in the parameters' ``.grad`` (the same float32 sum, in worker order, as the flat exchange); each
bucket is then all-reduced and divided by P, as the flat exchange does with the whole gradient:
bit for bit the same with 2 processes (one addition per entry), and otherwise as far as the
collective sums a bucket's entries in the order it sums the whole gradient's. A sparse
bucket is one worker's gradient, so ``scope=bucket`` with a sparse compressor needs one logical
worker per process. A task without a network (linear regression's closed-form gradient) or a job
of one process has nothing to overlap, and runs flat.

Timings per process (ms): ``select_ms`` (compression), ``comm_ms`` (the exchange nobody hid: all
of it when flat; when overlapped, from the last bucket's start to the last collective's
completion) and ``comm_total_ms`` (the time some collective was in flight), so ``comm_ms <=
comm_total_ms``, equal when flat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from sparsetrain.components import build, component_class, options
from sparsetrain.compressors.base import Compressor
from sparsetrain.exchange import CommStats, build_exchange, mean_all_reduce_async
from sparsetrain.layout import WorkerLayout
from sparsetrain.tasks.base import Task
from sparsetrain.tasks.flat_module import FlatModule
from sparsetrain.timing import ExchangeTimer, Stopwatch

__all__ = ["Gradients", "FlatGradients", "OverlappedGradients", "Bucket", "plan_buckets", "build_gradients"]


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


@dataclass(frozen=True)
class Bucket:
    """A stretch ``[start, end)`` of the flat gradient, whole parameters ``first`` to ``last - 1``
    (in the flat buffers' order), exchanged as one once backward has filled it."""

    start: int
    end: int
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_buckets(flat: FlatModule, module_order: list[int], cap: int, first_cap: int) -> list[Bucket]:
    """Cut the flat gradient into buckets of whole parameters, in the order they are exchanged.

    Each of the flat buffers' two regions (decayed parameters, then the others) is cut from its end
    backwards, a bucket closed once it holds ``cap`` entries or more, the region's first one (the
    first that backward fills) once it holds ``first_cap``, so that communication starts early
    (DDP's rules and defaults: 25 MB, 1 MB). Backward fills a network's gradients from its last
    layer to its first, so each bucket is a stretch of layers that backward finishes at once; a
    bucket never spans both regions, whose parameters interleave through all the layers.

    The buckets are exchanged in the order backward fills them: a bucket is full when backward
    reaches its first layer, the one of its parameters that comes first in ``module_order`` (each
    parameter's position in ``module.parameters()``), so the bucket whose first layer comes latest
    goes first. The order depends on nothing but the model, so it is the same on every process; a
    bucket that backward fills before its turn waits for those before it (less overlap, the same
    result).
    """
    offsets = flat.offsets
    boundary = next(i for i, offset in enumerate(offsets) if offset >= flat.decay_size)
    buckets = []
    for region_start, region_end in ((0, boundary), (boundary, len(flat.parameters))):
        last, limit = region_end, first_cap
        for first in range(region_end - 1, region_start - 1, -1):
            if offsets[last] - offsets[first] >= limit or first == region_start:
                buckets.append(Bucket(offsets[first], offsets[last], first, last))
                last, limit = first, cap
    return sorted(buckets, key=lambda b: -min(module_order[i] for i in range(b.first, b.last)))


class OverlappedGradients:
    """Each bucket of the flat gradient exchanged as soon as backward has filled it (``scope=bucket``).

    Backward copies every parameter's gradient into the flat gradient as it accumulates
    (:meth:`~sparsetrain.tasks.flat_module.FlatModule.streaming`); the bucket it completes (and any
    after it in :func:`plan_buckets`'s order that were waiting) is compressed by its own compressor
    (error feedback inside) and its collective started, the averaged bucket landing in place while
    backward goes on. The flat gradient is never copied anywhere else, where DDP (the previous
    design) copied every gradient into its buckets and back out: dense ResNet-18 on 2 CPU processes
    went from 1.046x plain DDP's step to 0.998x at 1 Gbit/s (``results/network/overlap.md``).

    A sparse compressor whose ``compress`` is plain error feedback (``e += g``, then select: all but
    DGC, :meth:`~sparsetrain.compressors.base.Compressor.takes_gradient_in_residual`) gets each
    gradient added straight into its residual instead, and compresses what is there
    (:meth:`~sparsetrain.compressors.base.SparseCompressor.compress_accumulated`): the same floats,
    without writing the gradient to the flat buffer and reading it back, a pass over 45 MB each for
    ResNet-18 that would otherwise run in the middle of backward.
    """

    def __init__(self, task: Task, compressor: dict[str, Any], ratio: float, exchange_mode: str,
                 layout: WorkerLayout, seed: int, device: torch.device, first_bucket_mb: float = 1.0) -> None:
        assert task.flat is not None and layout.processes > 1
        self.task, self.layout, self.device = task, layout, device
        compressor_cls = component_class(compressor["_target_"])
        self.dense = compressor_cls.dense
        bucket_mb = compressor["bucket_mb"] if "bucket_mb" in compressor else options(compressor_cls)["bucket_mb"].default
        module_order = {id(p): i for i, p in enumerate(task.model.parameters())}
        names = {id(p): name for name, p in task.model.named_parameters()}
        self._names = [names[id(p)] for p in task.flat.parameters]
        cap, first_cap = (max(1, int(mb * 2**20) // 4) for mb in (bucket_mb, min(bucket_mb, first_bucket_mb)))
        self.buckets = plan_buckets(task.flat, [module_order[id(p)] for p in task.flat.parameters], cap, first_cap)
        self._bucket_of = [0] * len(task.flat.parameters)
        for index, bucket in enumerate(self.buckets):
            self._bucket_of[bucket.first : bucket.last] = [index] * (bucket.last - bucket.first)
        self.compressors: list[Compressor] = [] if self.dense else [
            build(compressor, dim=bucket.size, ratio=ratio, worker=layout.rank, num_workers=layout.num_workers,
                  seed=seed, device=device)
            for bucket in self.buckets
        ]
        self._adds_into_residuals = not self.dense and all(c.takes_gradient_in_residual() for c in self.compressors)
        offsets = task.flat.offsets
        self._residual_stretch = [(b, offsets[i] - self.buckets[b].start, offsets[i + 1] - self.buckets[b].start)
                                  for i, b in enumerate(self._bucket_of)]
        self.exchanges = [
            build_exchange(type(c), c.dim, c.k, layout, device, mode=exchange_mode,
                           value_dtype=getattr(c, "value_dtype", torch.float32))
            for c in self.compressors
        ]
        self.timer = ExchangeTimer()

    def __call__(self, step: int) -> Gradients:
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._step, self._next, self._in_flight, self._traffic = step, 0, [], []
        self._unfilled = [bucket.last - bucket.first for bucket in self.buckets]
        last = self.layout.workers_per_process - 1
        for local in range(last):  # earlier hosted workers' gradients add up in the parameters' .grad
            loss_sum += self.task.local_gradient(local, step, accumulate=local > 0).detach()
        add_into = [self.compressors[index].residual[lo:hi] for index, lo, hi in self._residual_stretch] \
            if self._adds_into_residuals else None
        with self.task.flat.streaming(self._filled, add_into):
            loss_sum += self.task.local_gradient(last, step, accumulate=last > 0).detach()
        if self._next < len(self.buckets):
            bucket = self.buckets[self._next]
            parameters = self.task.flat.parameters
            missing = [self._names[i] for i in range(bucket.first, bucket.last) if parameters[i].grad is None]
            raise RuntimeError(f"backward gave {', '.join(missing) or 'some parameter'} no gradient, so bucket "
                               f"{self._next} never filled: every parameter of the network needs a gradient at "
                               f"every step")
        for future in self._in_flight:
            future.wait()
        timing = self.timer.finish()
        means = tuple(sum(column) / len(self.compressors) for column in zip(*(c.stats() for c in self.compressors)))
        return Gradients(loss_sum, CommStats.combined(self._traffic), timing.select_ms, timing.exposed_ms,
                         timing.busy_ms, means)

    def _filled(self, parameter: int) -> None:
        """Backward has copied ``parameter``'s gradient: start every bucket now due."""
        self._unfilled[self._bucket_of[parameter]] -= 1
        while self._next < len(self.buckets) and self._unfilled[self._next] == 0:
            self._start(self._next)
            self._next += 1

    def _start(self, index: int) -> None:
        bucket = self.buckets[index]
        grad = self.task.flat_grad[bucket.start : bucket.end]
        started = compressed_at = time.perf_counter()
        if self.dense:
            done, stats = mean_all_reduce_async(grad, self.layout.num_workers, self.layout.processes)
        else:
            compressor = self.compressors[index]
            self.exchanges[index].put(compressor.compress_accumulated(self._step) if self._adds_into_residuals
                                      else compressor.compress(grad, self._step))
            compressed_at = time.perf_counter()
            done, stats = self.exchanges[index].reduce_async(grad)  # the gradient is read: gbar lands in it
        self._in_flight.append(self.timer.timed(started, compressed_at, done))
        self._traffic.append(stats)

    @property
    def stat_names(self) -> tuple[str, ...]:
        """A compressor's statistics, averaged over the buckets."""
        return type(self.compressors[0]).stat_names if self.compressors else ()

    def observe(self, gbar: torch.Tensor) -> None:
        for bucket, compressor in zip(self.buckets, self.compressors):
            compressor.observe(gbar[bucket.start : bucket.end])

    def set_ratio(self, ratio: float) -> None:
        for compressor, exchange in zip(self.compressors, self.exchanges):
            compressor.set_ratio(ratio)
            exchange.k = compressor.k

    @property
    def k(self) -> int:
        """Entries one worker sends per step: the buckets' k summed (d for dense)."""
        return self.task.dim if self.dense else sum(c.k for c in self.compressors)

    def all_compressors(self) -> list[Compressor]:
        return self.compressors

    def state_dict(self) -> list[dict[str, Any]]:
        return [c.state_dict() for c in self.compressors]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for compressor, state in zip(self.compressors, states, strict=True):
            compressor.load_state_dict(state)


def build_gradients(
    compressor: dict[str, Any], ratio: float, exchange_mode: str, task: Task, layout: WorkerLayout, seed: int,
    device: torch.device,
) -> FlatGradients | OverlappedGradients:
    """The way ``compressor.scope`` asks for, where the task and the job allow it (see the module)."""
    if compressor.get("scope") == "bucket" and task.flat is not None and layout.processes > 1:
        return OverlappedGradients(task, compressor, ratio, exchange_mode, layout, seed, device)
    compressors = [
        build(compressor, dim=task.dim, ratio=ratio, worker=worker, num_workers=layout.num_workers, seed=seed,
              device=device)
        for worker in layout.worker_ids
    ]
    return FlatGradients(task, compressors, exchange_mode, layout, device)
