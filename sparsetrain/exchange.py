"""The exchange: turn every logical worker's payload into the averaged gradient ``gbar``.

``gbar[j] = (1/P) * sum_m s_m[j]`` on every process (ALGORITHMS.md), with the traffic one worker
would send on a real network:

* :class:`DenseExchange`: all-reduce; ``bytes_sent = 2 (P-1)/P * 4d`` (ring all-reduce).
* :class:`SparseExchange`: all-gather of fp32 values and int32 indices, scatter-add in worker
  order, divide by P; ``bytes_sent = 8 * count`` (+4 for the count when counts vary).

Values and indices travel in one float32 buffer per process (indices bit-cast, not converted), so
each step costs one collective for fixed counts and two (counts, then padded payloads) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from sparsetrain.collectives import all_gather_rows
from sparsetrain.compressors.base import Payload
from sparsetrain.layout import WorkerLayout

__all__ = ["CommStats", "DenseExchange", "SparseExchange", "dense_bytes", "build_exchange"]

VALUE_BYTES = 4
INDEX_BYTES = 4
COUNT_BYTES = 4


def dense_bytes(dim: int, num_workers: int) -> float:
    """Bytes one worker sends in a ring all-reduce of d float32: ``2 (P-1)/P * 4d``."""
    return 2.0 * (num_workers - 1) / num_workers * 4 * dim


@dataclass
class CommStats:
    """This step's traffic, identical on every process.

    bytes_sent: payload bytes one worker sent (mean over workers);
    wire_bytes: bytes one worker actually put on the wire, padding included (mean over workers);
    selected: entries one worker sent (mean over workers).
    """

    bytes_sent: float
    wire_bytes: float
    selected: float


class DenseExchange:
    """All-reduce of the sum of the hosted workers' gradients, divided by P."""

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
        sent = dense_bytes(self.dim, self.layout.num_workers)
        return CommStats(bytes_sent=sent, wire_bytes=sent, selected=float(self.dim))


class SparseExchange:
    """All-gather of (values, int32 indices), then scatter-add of all P contributions.

    With ``fixed_count`` every worker sends exactly ``k`` entries and one all-gather moves them.
    Otherwise the counts are gathered first and the payloads padded to the largest count; padding
    is dropped before the scatter-add, so nothing is lost or added twice, and a worker that sends
    nothing takes part with an empty row (the job never hangs on it).
    """

    def __init__(
        self, dim: int, k: int, layout: WorkerLayout, device: torch.device, fixed_count: bool
    ) -> None:
        if dim >= 2**31:
            raise ValueError("int32 indices address at most 2**31 - 1 entries")
        self.dim = dim
        self.k = k
        self.layout = layout
        self.device = device
        self.fixed_count = fixed_count
        self._payloads: list[Payload] = []

    def put(self, payload: Payload) -> None:
        """Queue one hosted worker's payload (in worker order)."""
        if self.fixed_count and payload.count != self.k:
            raise ValueError(f"a fixed-count compressor sent {payload.count} entries, not k={self.k}")
        self._payloads.append(payload)

    def reduce(self, out: torch.Tensor) -> CommStats:
        payloads, self._payloads = self._payloads, []
        assert len(payloads) == self.layout.workers_per_process
        if self.fixed_count:
            counts = torch.full((self.layout.num_workers,), self.k, dtype=torch.int32)
        else:
            local_counts = torch.tensor([p.count for p in payloads], dtype=torch.int32, device=self.device)
            counts = all_gather_rows(local_counts, self.layout.processes).cpu()
        width = int(counts.max())
        header = 0 if self.fixed_count else COUNT_BYTES
        mean_count = float(counts.double().mean())
        stats = CommStats(
            bytes_sent=mean_count * (VALUE_BYTES + INDEX_BYTES) + header,
            wire_bytes=width * (VALUE_BYTES + INDEX_BYTES) + header,
            selected=mean_count,
        )
        out.zero_()
        if width == 0:  # nobody sends anything: every process knows it from the counts
            return stats

        send = torch.zeros(len(payloads), 2 * width, dtype=torch.float32, device=self.device)
        for row, payload in zip(send, payloads):
            n = payload.count
            row[:n] = payload.values
            row[width : width + n] = payload.indices.to(torch.int32).view(torch.float32)
        gathered = all_gather_rows(send, self.layout.processes)  # (P, 2 * width), worker order

        values = gathered[:, :width]
        indices = gathered[:, width:].view(torch.int32)
        if not self.fixed_count:
            valid = torch.arange(width, device=self.device) < counts.to(self.device)[:, None]
            values, indices = values[valid], indices[valid]
        out.index_add_(0, indices.reshape(-1).long(), values.reshape(-1))
        out.div_(self.layout.num_workers)
        return stats


def build_exchange(compressor_cls: type, dim: int, k: int, layout: WorkerLayout, device: torch.device):
    """The exchange that matches a compressor class's ``dense`` / ``fixed_count`` traits."""
    if compressor_cls.dense:
        return DenseExchange(dim, layout, device)
    return SparseExchange(dim, k, layout, device, fixed_count=compressor_cls.fixed_count)
