"""The exchange: turn every logical worker's payload into the averaged gradient ``gbar``.

``gbar[j] = (1/P) * sum_m s_m[j]`` on every process (ALGORITHMS.md), and the traffic as the wire
carries it (:mod:`sparsetrain.net.cost`: ring collectives, each logical worker a host):

* :class:`DenseExchange`: all-reduce of the d float32 gradients.
* :class:`SparseExchange`, ``exchange=allgather``: all-gather of every worker's (values, int32
  indices), then a scatter-add in worker order. Each worker sends and receives ``(P-1) 8k``
  bytes, which exceeds a dense all-reduce's ``2 (P-1)/P 4d`` once ``P k > d`` (fill-in).
* ``exchange=allreduce``: each process scatter-adds its hosted workers' payloads into a dense
  buffer and all-reduces it (SparCML's switch to a dense representation, Renggli et al. 2019,
  "SparCML: High-Performance Sparse Communication for Machine Learning", Sec. 4). Same aggregate;
  the float32 sum of an entry several workers sent may be associated differently.
* ``exchange=auto`` (default): whichever moves fewer wire bytes, by the formulas above; for a
  variable count (Gaussian-k) decided every step from the gathered counts, identically on every
  process.

Variable counts travel first (an all-gather of one int32 per worker); payloads are then padded to
the largest count, and the padding is dropped before the scatter-add, so nothing is lost or added
twice, and a worker that sends nothing takes part with an empty row (the job never hangs on it).
After the scatter-add only the entries someone sent are divided by P: the other d - Pk are zero.
Indices and values travel in one byte buffer per worker, as they are (int32 indices, values in
the compressor's ``value_dtype``: 8 bytes per entry, 6 with half-precision values, a row padded to
whole int32s), and are summed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.futures import Future

from sparsetrain.collectives import all_gather_rows, all_gather_rows_async, all_reduce_async, completed
from sparsetrain.compressors.base import Payload
from sparsetrain.layout import WorkerLayout
from sparsetrain.net.cost import Collective, allgather, allreduce

__all__ = ["EXCHANGES", "CommStats", "DenseExchange", "SparseExchange", "dense_bytes", "build_exchange",
           "mean_all_reduce_async"]

EXCHANGES = ("auto", "allgather", "allreduce")
VALUE_BYTES = 4
INDEX_BYTES = 4
ENTRY_BYTES = VALUE_BYTES + INDEX_BYTES
COUNT_BYTES = 4


def row_bytes(width: int, value_bytes: int = VALUE_BYTES) -> int:
    """One worker's all-gathered row for ``width`` entries: int32 indices, then the values, padded
    to whole int32s so that every row's indices stay aligned."""
    return INDEX_BYTES * width + INDEX_BYTES * -(-value_bytes * width // INDEX_BYTES)


def dense_bytes(dim: int, num_workers: int) -> float:
    """Bytes one worker sends in a ring all-reduce of d float32: ``2 (P-1)/P * 4d``."""
    return allreduce(4 * dim, num_workers).wire_bytes


@dataclass(frozen=True)
class CommStats:
    """This step's exchange, identical on every process; per worker, mean over workers.

    collectives: what was issued, with the bytes each put on the wire;
    payload_bytes: what one worker originated (8 per entry, 6 with half-precision values, +4 for
        its count when counts vary; 4d for dense), which the wire may carry P-1 times over;
    selected: entries one worker sent;
    summed: the sparse payloads were summed densely and all-reduced (``exchange=allreduce``);
    selected_max: the most entries any worker sent (the width payloads were padded to), when
        counts vary; None: every worker sent ``selected``.
    """

    collectives: tuple[Collective, ...]
    payload_bytes: float
    selected: float
    summed: bool
    most_selected: float | None = None

    @property
    def selected_max(self) -> float:
        return self.selected if self.most_selected is None else self.most_selected

    @property
    def bytes_sent(self) -> float:
        """Wire bytes one worker sent; ring collectives receive as many as they send."""
        return sum(c.wire_bytes for c in self.collectives)

    @property
    def bytes_received(self) -> float:
        return self.bytes_sent

    @classmethod
    def combined(cls, parts: list[CommStats]) -> CommStats:
        """One step's exchange made of several (gradient buckets): their collectives, payloads and
        selections added; the padded widths added where some part's counts vary."""
        varying = any(part.most_selected is not None for part in parts)
        return cls(
            tuple(c for part in parts for c in part.collectives), sum(part.payload_bytes for part in parts),
            sum(part.selected for part in parts), any(part.summed for part in parts),
            sum(part.selected_max for part in parts) if varying else None,
        )


def mean_all_reduce_async(tensor: torch.Tensor, num_workers: int, processes: int, group: Any = None,
                          divide_first: bool = False) -> tuple[Future, CommStats]:
    """``tensor`` (the sum of a process's hosted workers' gradients) summed over processes and
    divided by the number of workers, in place, and its traffic. Divided after the sum by default,
    as :class:`DenseExchange` does (the same float32 result); ``divide_first`` as DDP does (against
    fp16 overflow)."""
    nbytes = tensor.numel() * tensor.element_size()
    stats = CommStats((allreduce(nbytes, num_workers),), float(nbytes), float(tensor.numel()), False)
    if divide_first:
        return all_reduce_async(tensor.div_(num_workers), processes, group), stats
    return all_reduce_async(tensor, processes, group).then(lambda done: done.value().div_(num_workers)), stats


class DenseExchange:
    """All-reduce of the sum of the hosted workers' gradients, divided by P."""

    dense = True

    def __init__(self, dim: int, layout: WorkerLayout, device: torch.device) -> None:
        self.dim = dim
        self.layout = layout
        self._buffer = torch.zeros(dim, dtype=torch.float32, device=device)
        self._sum: torch.Tensor | None = None

    def put(self, payload: Payload) -> None:
        """Add one hosted worker's gradient (in worker order). The tensor may be reused after."""
        if self._sum is None:
            self._sum = self._buffer.copy_(payload.values)
        else:
            self._sum.add_(payload.values)

    def reduce(self, out: torch.Tensor) -> CommStats:
        assert self._sum is not None, "put() every hosted worker's payload before reduce()"
        if self.layout.processes > 1:
            dist.all_reduce(self._sum)
        torch.div(self._sum, self.layout.num_workers, out=out)
        self._sum = None
        return CommStats((allreduce(4 * self.dim, self.layout.num_workers),), 4.0 * self.dim, float(self.dim), False)


class SparseExchange:
    """Sparse payloads to ``gbar``: all-gathered, or summed densely and all-reduced (see module)."""

    dense = False

    def __init__(
        self, dim: int, k: int, layout: WorkerLayout, device: torch.device, fixed_count: bool, mode: str = "auto",
        group: Any = None, value_dtype: torch.dtype = torch.float32,
    ) -> None:
        if dim >= 2**31:
            raise ValueError("int32 indices address at most 2**31 - 1 entries")
        if mode not in EXCHANGES:
            raise ValueError(f"exchange={mode!r} is not one of {', '.join(EXCHANGES)}")
        self.dim = dim
        self.k = k
        self.layout = layout
        self.device = device
        self.fixed_count = fixed_count
        self.mode = mode
        self.group = group
        self.value_dtype = value_dtype
        self.value_bytes = value_dtype.itemsize
        self._payloads: list[Payload] = []

    def put(self, payload: Payload) -> None:
        """Queue one hosted worker's payload (in worker order)."""
        if self.fixed_count and payload.count != self.k:
            raise ValueError(f"a fixed-count compressor sent {payload.count} entries, not k={self.k}")
        self._payloads.append(payload)

    def summed(self, width: int) -> bool:
        """Whether payloads of ``width`` entries go as a dense all-reduce rather than an all-gather."""
        if self.mode != "auto":
            return self.mode == "allreduce"
        workers = self.layout.num_workers
        return allreduce(4 * self.dim, workers).wire_bytes < allgather(row_bytes(width, self.value_bytes), workers).wire_bytes

    def reduce(self, out: torch.Tensor) -> CommStats:
        """``gbar`` into ``out``; returns this step's traffic."""
        done, stats = self.reduce_async(out)
        done.wait()
        return stats

    def reduce_async(self, out: torch.Tensor) -> tuple[Future, CommStats]:
        """:meth:`reduce` started: a future that completes once ``out`` holds ``gbar``, and the
        traffic. For DDP's hooks, whose caller goes on while the payloads travel; variable counts
        are gathered before it returns (one int32 per worker)."""
        payloads, self._payloads = self._payloads, []
        assert len(payloads) == self.layout.workers_per_process
        workers, processes = self.layout.num_workers, self.layout.processes
        if self.fixed_count:
            counts, issued, header = torch.full((workers,), self.k, dtype=torch.int32), (), 0
        else:
            local_counts = torch.tensor([p.count for p in payloads], dtype=torch.int32, device=self.device)
            counts = all_gather_rows(local_counts, processes, self.group).cpu()
            issued, header = (allgather(COUNT_BYTES, workers),), COUNT_BYTES
        width = int(counts.max())
        mean_count = float(counts.double().mean())
        summed = self.summed(width)
        out.zero_()
        if summed:
            for payload in payloads:
                out.index_add_(0, payload.indices, payload.values.float())
            done = all_reduce_async(out, processes, self.group).then(lambda added: added.value().div_(workers))
            issued += (allreduce(4 * self.dim, workers),)
        elif width > 0:  # nobody sending anything is known to every process from the counts
            done = self._gather_and_add(payloads, counts, width, out)
            issued += (allgather(row_bytes(width, self.value_bytes), workers),)
        else:
            done = completed(out)
        stats = CommStats(issued, mean_count * (INDEX_BYTES + self.value_bytes) + header, mean_count, summed,
                          None if self.fixed_count else float(width))
        return done, stats

    def _gather_and_add(self, payloads: list[Payload], counts: torch.Tensor, width: int, out: torch.Tensor) -> Future:
        """All-gather (indices, values) padded to ``width`` and scatter-add them in worker order."""
        values_at = INDEX_BYTES * width
        send = torch.zeros(len(payloads), row_bytes(width, self.value_bytes), dtype=torch.uint8, device=self.device)
        for row, payload in zip(send, payloads):
            n = payload.count
            if n:  # (an empty tensor cannot be viewed as bytes)
                row[: INDEX_BYTES * n] = payload.indices.to(torch.int32).view(torch.uint8)
                row[values_at : values_at + self.value_bytes * n] = payload.values.to(self.value_dtype).view(torch.uint8)

        def scatter_add(gathered: Future) -> torch.Tensor:  # (P, row bytes), worker order
            rows = gathered.value()
            indices = rows[:, :values_at].view(torch.int32)
            values = rows[:, values_at : values_at + self.value_bytes * width].view(self.value_dtype)
            if not self.fixed_count:
                valid = torch.arange(width, device=self.device) < counts.to(self.device)[:, None]
                values, indices = values[valid], indices[valid]
            indices = indices.reshape(-1).long()
            out.index_add_(0, indices, values.reshape(-1).float())
            # Only the sent entries are non-zero: divide them alone, not all d (the same quotients).
            return out.index_put_((indices,), out[indices].div_(self.layout.num_workers))

        return all_gather_rows_async(send, self.layout.processes, self.group).then(scatter_add)


def build_exchange(
    compressor_cls: type, dim: int, k: int, layout: WorkerLayout, device: torch.device, mode: str = "auto",
    value_dtype: torch.dtype = torch.float32,
) -> DenseExchange | SparseExchange:
    """The exchange that matches a compressor class's ``dense`` / ``fixed_count`` traits."""
    if compressor_cls.dense:
        return DenseExchange(dim, layout, device)
    return SparseExchange(dim, k, layout, device, fixed_count=compressor_cls.fixed_count, mode=mode,
                          value_dtype=value_dtype)
