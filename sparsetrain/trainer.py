"""The per-process training loop: compute, compress, exchange, step, log.

One step, for the logical workers this process hosts (see :mod:`sparsetrain.layout`)::

    for each hosted worker w:      g_w = local gradient;  payload_w = compressor_w(g_w)
    gbar = exchange(payloads)      # identical on every process
    compressors see gbar;  optimizer steps on gbar (momentum and weight decay after aggregation)

The run lasts ``train.epochs`` passes over each worker's data, capped at ``train.steps``; step s
(1-based) updates with the learning rate ``train.lr_schedule`` gives it, logs the loss at the
parameters it started from and the task metrics (and, at epoch ends, every ``log.eval_every``
steps and at the last step, the held-out ``eval/`` metrics) at the parameters it produced.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sparsetrain import checkpoint
from sparsetrain.components import build
from sparsetrain.compressors.base import Compressor
from sparsetrain.exchange import build_exchange, dense_bytes
from sparsetrain.layout import WorkerLayout
from sparsetrain.metrics import MetricsLogger, NullLogger
from sparsetrain.optim import FlatSGD
from sparsetrain.progress import Progress
from sparsetrain.schedule import LRSchedule
from sparsetrain.tasks.base import Task
from sparsetrain.timing import Stopwatch

__all__ = ["Trainer", "total_steps"]


def total_steps(epochs: float | None, steps: int | None, steps_per_epoch: int) -> int:
    """The run's length: ``train.epochs`` passes over the data, capped at ``train.steps`` when set
    (either alone also works)."""
    lengths = [n for n in (round(epochs * steps_per_epoch) if epochs else None, steps) if n]
    if not lengths:
        raise ValueError("set train.epochs or train.steps")
    return max(1, min(lengths))


class Trainer:
    def __init__(self, job: dict[str, Any], run_dir: Path | str, layout: WorkerLayout, device: torch.device):
        self.layout = layout
        self.device = device
        train = job["train"]
        self.log_every = int(job["log"]["every"])
        self.eval_every = int(job["log"].get("eval_every") or 0)

        self.task: Task = build(job["task"], layout=layout, device=device, seed=job["seed"])
        dim = self.task.dim
        self.steps_per_epoch = self.task.steps_per_epoch
        self.steps = total_steps(train.get("epochs"), train.get("steps"), self.steps_per_epoch)
        self.schedule = LRSchedule(
            base=train["lr"],
            total=self.steps,
            kind=train.get("lr_schedule", "constant"),
            warmup=round(train.get("warmup_epochs", 0) * self.steps_per_epoch),
            milestones=tuple(train.get("milestones", (0.5, 0.75))),
            gamma=train.get("gamma", 0.1),
        )
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
            decay_size=dim if train.get("decay_norm_and_bias", True) else self.task.decay_size,
        )
        self.run_dir = Path(run_dir)
        self.ckpt_every = int(job.get("ckpt", {}).get("every") or 0)
        self.nonfinite = train.get("nonfinite", "error")
        self.fault = job.get("fault") or {}
        self.bytes_total = 0.0
        self.reject_factor = train.get("reject_factor")
        self.rejected_steps = 0
        self.skipped_steps = 0
        self._accepted_norm: float | None = None
        self.start_step = self._restore() + 1
        self.logger = (
            MetricsLogger(run_dir, tensorboard=job["log"]["tensorboard"], resume_step=self.start_step - 1)
            if layout.rank == 0
            else NullLogger()
        )
        self.select_watch = Stopwatch(device)
        self.comm_watch = Stopwatch(device)
        self.step_watch = Stopwatch(device)
        # Resumed after the last step: the metrics logged before the restart are the final ones.
        self.last_metrics: dict[str, float] = dict(getattr(self.logger, "last", {}))
        self._pending: list[tuple[int, list[float], dict[str, float]]] = []
        self._flush_rows = max(1, 100 // self.log_every)
        self.progress = Progress(
            self.steps, self.start_step - 1, self.steps_per_epoch,
            enabled=layout.rank == 0 and job["log"].get("progress", True),
        )

    def train_step(self, step: int) -> tuple[torch.Tensor, Any]:
        """One synchronous step over the hosted workers; returns (sum of their losses, CommStats)."""
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for local, compressor in enumerate(self.compressors):
            loss_sum += self.task.local_gradient(local, step).detach()
            if step == self.fault.get("nonfinite_at_step") and self.layout.rank == 0 and local == 0:
                self.task.flat_grad[0] = float("nan")
            with self.select_watch:
                payload = compressor.compress(self.task.flat_grad, step)
            self.exchange.put(payload)
        with self.comm_watch:
            stats = self.exchange.reduce(out=self.task.flat_grad)
        if not self._finite(step):
            return loss_sum, stats
        for compressor in self.compressors:
            compressor.observe(self.task.flat_grad)
        if self._accept(self.task.flat_grad):
            self.optimizer.step()
        return loss_sum, stats

    def _finite(self, step: int) -> bool:
        """``train.nonfinite``: what a NaN or Inf in the averaged gradient does. gbar is identical on
        every process, so all of them take the same decision.

        ``error`` (default) stops the job, the last checkpoint kept. ``skip`` drops the step on all
        ranks (no update, counted in ``train/skipped_steps``) and zeroes the non-finite entries of
        every compressor's state (residuals, RegTop-k's memory) so they do not poison later steps.
        """
        if bool(torch.isfinite(self.task.flat_grad).all()):
            return True
        if self.nonfinite == "error":
            raise FloatingPointError(
                f"the averaged gradient of step {step} holds NaN or Inf; stopped (train.nonfinite=error), "
                f"the last checkpoint is kept; train.nonfinite=skip drops such steps instead"
            )
        self.skipped_steps += 1
        for compressor in self.compressors:
            for value in compressor.state_dict().values():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    torch.nan_to_num_(value, nan=0.0, posinf=0.0, neginf=0.0)
        return False

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
        for step in range(self.start_step, self.steps + 1):
            self._maybe_die(step)
            for watch in (self.select_watch, self.comm_watch, self.step_watch):
                watch.reset()
            self.optimizer.lr = self.schedule(step)
            with self.step_watch:
                loss_sum, stats = self.train_step(step)
            self.bytes_total += stats.bytes_sent * self.layout.num_workers
            evaluated = self.task.evaluate() if self._eval_due(step) else {}
            if evaluated or step % self.log_every == 0 or step == self.steps:
                self._record(step, loss_sum, stats, evaluated)
            if self.progress.active:
                self.progress.update(step, float(loss_sum) / self.layout.workers_per_process, evaluated)
            if len(self._pending) >= self._flush_rows or step == self.steps:
                self._flush()
            if self.ckpt_every and (step % self.ckpt_every == 0 or step == self.steps):
                self._flush()
                self._save(step)
        self.progress.close()
        return self.last_metrics

    def _eval_due(self, step: int) -> bool:
        """Evaluate at every epoch end, every ``log.eval_every`` steps and at the last step."""
        return (
            step == self.steps
            or step % self.steps_per_epoch == 0
            or bool(self.eval_every and step % self.eval_every == 0)
        )

    def state_dict(self, step: int) -> dict[str, Any]:
        """This rank's whole training state after ``step``: enough to continue bit for bit."""
        return {
            "step": step,
            "params": self.task.flat_params,
            "task": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "compressors": [c.state_dict() for c in self.compressors],
            "counters": {
                "bytes_total": self.bytes_total,
                "rejected_steps": self.rejected_steps,
                "skipped_steps": self.skipped_steps,
                "accepted_norm": self._accepted_norm,
            },
            "rng": torch.get_rng_state(),
        }

    def _save(self, step: int) -> None:
        checkpoint.save_rank(self.run_dir, step, self.layout.rank, self.state_dict(step))
        if self.layout.processes > 1:
            dist.barrier()
        local = int(os.environ.get("LOCAL_WORLD_SIZE", self.layout.processes))
        if self.layout.rank % local == 0:  # each node's first rank marks that node's files
            node_ranks = range(self.layout.rank, self.layout.rank + local)
            checkpoint.mark_complete(self.run_dir, step, self.layout.processes, node_ranks)

    def _restore(self) -> int:
        """Load the newest checkpoint that every rank has (one all-reduce); returns its step (or 0)."""
        steps = checkpoint.complete_steps(self.run_dir)
        common = torch.tensor([steps[-1] if steps else 0], dtype=torch.int64, device=self.device)
        if self.layout.processes > 1:
            dist.all_reduce(common, op=dist.ReduceOp.MIN)
        step = int(common)
        if step == 0:
            return 0
        if step not in steps:
            raise RuntimeError(f"checkpoint of step {step}, which every rank has, is missing from {self.run_dir}")
        state = checkpoint.load_rank(checkpoint.step_dir(self.run_dir, step), self.layout.rank, self.layout.processes)
        self.task.flat_params.copy_(state["params"])
        self.task.load_state_dict(state["task"])
        self.optimizer.load_state_dict(state["optimizer"])
        for compressor, saved in zip(self.compressors, state["compressors"], strict=True):
            compressor.load_state_dict(saved)
        counters = state["counters"]
        self.bytes_total = counters["bytes_total"]
        self.rejected_steps = counters["rejected_steps"]
        self.skipped_steps = counters["skipped_steps"]
        self._accepted_norm = counters["accepted_norm"]
        torch.set_rng_state(state["rng"])
        return state["step"]

    def _maybe_die(self, step: int) -> None:
        """Fault injection for tests: ``fault.kill_rank`` dies abruptly (SIGKILL, no clean-up) at
        ``fault.at_step``, once per run directory."""
        if step != self.fault.get("at_step") or self.layout.rank != self.fault.get("kill_rank"):
            return
        marker = self.run_dir / f"fault_injected_rank{self.layout.rank}"
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    def _record(self, step: int, loss_sum: torch.Tensor, stats, evaluated: dict[str, float]) -> None:
        """Keep this step's local measurements and the metrics known on every process."""
        local = [float(loss_sum), self.select_watch.ms, self.comm_watch.ms, self.step_watch.ms]
        if type(self.compressors[0]).dense:
            compression = 1.0
        else:
            compression = self.dense_bytes / stats.bytes_sent if stats.bytes_sent else float("nan")
        shared = {
            **self.task.metrics(),
            **evaluated,
            "train/lr": self.optimizer.lr,
            "train/epoch": step / self.steps_per_epoch,
            "comm/bytes_sent": stats.bytes_sent,
            "comm/wire_bytes": stats.wire_bytes,
            "comm/bytes_total": self.bytes_total,
            "comm/compression": compression,
            "comm/selected": stats.selected,
        }
        if self.reject_factor is not None:
            shared["train/rejected_steps"] = float(self.rejected_steps)
        if self.nonfinite == "skip":
            shared["train/skipped_steps"] = float(self.skipped_steps)
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
