"""Metric rows: recorded every logged step, averaged over processes in batches, then logged.

A row holds two kinds of values. *Shared* ones are identical on every process (the task's
metrics, the learning rate, the traffic: all computed from the same aggregate). *Local* ones
differ per process (the training loss of its hosted workers, its timings) and are averaged over
processes with one all-reduce per batch of rows, so a per-step log does not add a collective to
every step.

A batch is flushed once it holds about a second of training (at most 100 rows) and at the end.
The batch size is derived from the step times of the previous flushed batch, which every process
knows identically after the all-reduce, so all processes flush at the same steps.

When a run fails, :meth:`MetricRows.flush` (the failure hit every rank at the same step, as a
non-finite aggregate does) or :meth:`MetricRows.flush_local` (another rank failed and the
collective cannot complete) writes what is pending, so no logged step is lost; rows written by
``flush_local`` average the local values over this process's workers only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from sparsetrain.layout import WorkerLayout
from sparsetrain.metrics import MetricsLogger, NullLogger

__all__ = ["LocalMeasurements", "MetricRows"]

FLUSH_SECONDS = 1.0
MAX_PENDING = 100


@dataclass
class LocalMeasurements:
    """One step's per-process values: summed over this process's workers (loss, select time, the
    compressors' own statistics, :meth:`~sparsetrain.compressors.base.Compressor.stats`) or
    measured once per process (exchange and step time). ``comm_ms`` is the exchange time backward
    did not hide, ``comm_total_ms`` all of it (:mod:`sparsetrain.train.gradients`)."""

    loss_sum: float
    select_ms: float
    comm_ms: float
    comm_total_ms: float
    step_ms: float
    compressor_sums: tuple[float, ...] = ()

    def row(self) -> list[float]:
        return [self.loss_sum, self.select_ms, self.comm_ms, self.comm_total_ms, self.step_ms, *self.compressor_sums]

    @classmethod
    def from_row(cls, values: list[float]) -> "LocalMeasurements":
        return cls(*values[:5], tuple(values[5:]))

    def averaged(self, workers: int, processes: int, stat_names: tuple[str, ...]) -> dict[str, float]:
        """Sums over all processes -> the logged means (per worker, per process)."""
        return {
            "train/loss": self.loss_sum / workers,
            "time/select_ms": self.select_ms / workers,
            "time/comm_ms": self.comm_ms / processes,
            "time/comm_total_ms": self.comm_total_ms / processes,
            "time/step_ms": self.step_ms / processes,
            **{name: value / workers for name, value in zip(stat_names, self.compressor_sums, strict=True)},
        }


@dataclass
class MetricRows:
    layout: WorkerLayout
    device: torch.device
    logger: MetricsLogger | NullLogger
    log_every: int
    stat_names: tuple[str, ...] = ()
    """The compressor's statistics, in the order of ``LocalMeasurements.compressor_sums``."""
    pending: list[tuple[int, LocalMeasurements, dict[str, float]]] = field(default_factory=list)
    flush_after: int = 1
    last: dict[str, float] = field(default_factory=dict)
    """The newest logged row (every process keeps it: it is the run's final metrics)."""

    def record(self, step: int, local: LocalMeasurements, shared: dict[str, float]) -> None:
        self.pending.append((step, local, shared))

    @property
    def due(self) -> bool:
        return len(self.pending) >= self.flush_after

    def flush(self) -> None:
        """Average the pending local values over processes (one all-reduce) and log every row."""
        if not self.pending:
            return
        sums = torch.tensor(
            [m.row() for _, m, _ in self.pending],
            dtype=torch.float64, device=self.device,
        )
        if self.layout.processes > 1:
            dist.all_reduce(sums)
        self._log(sums.tolist(), self.layout.num_workers, self.layout.processes)
        step_ms = sums[:, 4].mean().item() / self.layout.processes
        self.flush_after = int(min(MAX_PENDING, max(1, FLUSH_SECONDS * 1e3 / max(step_ms * self.log_every, 1e-3))))

    def flush_local(self) -> None:
        """Log the pending rows with this process's own local values (no collective)."""
        sums = [m.row() for _, m, _ in self.pending]
        self._log(sums, self.layout.workers_per_process, 1)

    def _log(self, sums: list[list[float]], workers: int, processes: int) -> None:
        for (step, _, shared), values in zip(self.pending, sums):
            local = LocalMeasurements.from_row(values).averaged(workers, processes, self.stat_names)
            if "time/comm_model_ms" in shared:  # the step as the model's link would have it, the part of
                hidden = local["time/comm_total_ms"] - local["time/comm_ms"]  # the exchange backward hid kept hidden
                exposed = max(0.0, shared["time/comm_model_ms"] - hidden)
                local["time/step_model_ms"] = local["time/step_ms"] - local["time/comm_ms"] + exposed
            self.last = {"train/loss": local.pop("train/loss"), **shared, **local}
            self.logger.log(step, self.last)
        self.pending = []
