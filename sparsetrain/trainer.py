"""The per-process training loop: compute, compress, exchange, step, log.

One step, for the logical workers this process hosts (see :mod:`sparsetrain.layout`)::

    for each hosted worker w:      g_w = local gradient;  payload_w = compressor_w(g_w)
    gbar = exchange(payloads)      # identical on every process
    compressors see gbar;  optimizer steps on gbar (momentum and weight decay after aggregation)

Step s (1..train.steps) logs the loss at the parameters it started from and the task metrics at
the parameters it produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sparsetrain.components import build
from sparsetrain.compressors.base import Compressor
from sparsetrain.exchange import build_exchange, dense_bytes
from sparsetrain.layout import WorkerLayout
from sparsetrain.metrics import MetricsLogger, NullLogger
from sparsetrain.optim import FlatSGD
from sparsetrain.tasks.base import Task
from sparsetrain.timing import Stopwatch

__all__ = ["Trainer"]


class Trainer:
    def __init__(self, job: dict[str, Any], run_dir: Path | str, layout: WorkerLayout, device: torch.device):
        self.layout = layout
        self.device = device
        train = job["train"]
        self.steps = int(train["steps"])
        self.log_every = int(job["log"]["every"])

        self.task: Task = build(job["task"], layout=layout, device=device, seed=job["seed"])
        dim = self.task.dim
        self.compressors: list[Compressor] = [
            build(
                job["compressor"],
                dim=dim,
                ratio=job["ratio"],
                worker=worker,
                num_workers=layout.num_workers,
                seed=job["seed"],
                device=device,
            )
            for worker in layout.worker_ids
        ]
        self.k = self.compressors[0].k
        self.exchange = build_exchange(type(self.compressors[0]), dim, self.k, layout, device)
        self.dense_bytes = dense_bytes(dim, layout.num_workers)
        self.optimizer = FlatSGD(
            self.task.flat_params,
            self.task.flat_grad,
            lr=train["lr"],
            momentum=train["momentum"],
            weight_decay=train["weight_decay"],
            nesterov=train.get("nesterov", False),
            decay_size=self.task.decay_size,
        )
        self.logger = (
            MetricsLogger(run_dir, tensorboard=job["log"]["tensorboard"]) if layout.rank == 0 else NullLogger()
        )
        self.select_watch = Stopwatch(device)
        self.comm_watch = Stopwatch(device)
        self.step_watch = Stopwatch(device)
        self.bytes_total = 0.0
        self.reject_factor = train.get("reject_factor")
        self.rejected_steps = 0
        self._accepted_norm: float | None = None
        self.last_metrics: dict[str, float] = {}
        self._pending: list[tuple[int, list[float], dict[str, float]]] = []
        self._flush_rows = max(1, 100 // self.log_every)

    def train_step(self, step: int) -> tuple[torch.Tensor, Any]:
        """One synchronous step over the hosted workers; returns (sum of their losses, CommStats)."""
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for local, compressor in enumerate(self.compressors):
            loss_sum += self.task.local_gradient(local, step).detach()
            with self.select_watch:
                payload = compressor.compress(self.task.flat_grad, step)
            self.exchange.put(payload)
        with self.comm_watch:
            stats = self.exchange.reduce(out=self.task.flat_grad)
        for compressor in self.compressors:
            compressor.observe(self.task.flat_grad)
        if self._accept(self.task.flat_grad):
            self.optimizer.step()
        return loss_sum, stats

    def _accept(self, aggregate: torch.Tensor) -> bool:
        """``train.reject_factor`` (off by default): skip the update when ``||gbar||^2`` exceeds
        that many times the last accepted one, as the RegTop-k authors' linear-regression script
        does (ALGORITHMS.md: not part of any algorithm). gbar is identical on every process, so all
        of them decide alike."""
        if self.reject_factor is None:
            return True
        norm = float(aggregate.square().sum())
        if self._accepted_norm is not None and norm > self.reject_factor * self._accepted_norm:
            self.rejected_steps += 1
            return False
        self._accepted_norm = norm
        return True

    def run(self) -> dict[str, float]:
        """Train for ``train.steps`` steps; returns the last logged metrics (on every rank)."""
        for step in range(1, self.steps + 1):
            for watch in (self.select_watch, self.comm_watch, self.step_watch):
                watch.reset()
            with self.step_watch:
                loss_sum, stats = self.train_step(step)
            self.bytes_total += stats.bytes_sent * self.layout.num_workers
            if step % self.log_every == 0 or step == self.steps:
                self._record(step, loss_sum, stats)
            if len(self._pending) >= self._flush_rows or step == self.steps:
                self._flush()
        return self.last_metrics

    def _record(self, step: int, loss_sum: torch.Tensor, stats) -> None:
        """Keep this step's local measurements and the metrics known on every process."""
        local = [float(loss_sum), self.select_watch.ms, self.comm_watch.ms, self.step_watch.ms]
        if type(self.compressors[0]).dense:
            compression = 1.0
        else:
            compression = self.dense_bytes / stats.bytes_sent if stats.bytes_sent else float("nan")
        shared = {
            **self.task.metrics(),
            "comm/bytes_sent": stats.bytes_sent,
            "comm/wire_bytes": stats.wire_bytes,
            "comm/bytes_total": self.bytes_total,
            "comm/compression": compression,
            "comm/selected": stats.selected,
        }
        if self.reject_factor is not None:
            shared["train/rejected_steps"] = float(self.rejected_steps)
        self._pending.append((step, local, shared))

    def _flush(self) -> None:
        """Average the pending local measurements over workers (one all-reduce) and log them.

        Batching keeps a per-step log from doubling the number of collectives per step; rows are
        flushed at least every ~100 steps and at the end.
        """
        if not self._pending:
            return
        totals = torch.tensor([local for _, local, _ in self._pending], dtype=torch.float64, device=self.device)
        if self.layout.processes > 1:
            dist.all_reduce(totals)
        workers, processes = self.layout.num_workers, self.layout.processes
        for (step, _, shared), (loss, select_ms, comm_ms, step_ms) in zip(self._pending, totals.tolist()):
            self.last_metrics = {
                "train/loss": loss / workers,
                **shared,
                "time/select_ms": select_ms / workers,
                "time/comm_ms": comm_ms / processes,
                "time/step_ms": step_ms / processes,
            }
            self.logger.log(step, self.last_metrics)
        self._pending = []

    def close(self, summary: dict[str, Any]) -> None:
        self.logger.close(summary)
