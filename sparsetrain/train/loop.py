"""The training loop: one synchronous step for the logical workers this process hosts.

    for each hosted worker w:   g_w = its local gradient;  payload_w = compressor_w(g_w)
    gbar = exchange(payloads)   the average over all P workers, identical on every process
    unless a guard refuses the step: compressors see gbar, the optimizer steps on it
    log; checkpoint

The first two lines are :mod:`sparsetrain.train.gradients`, which runs them one after the other
(``compressor.scope=model``) or bucket by bucket during backward (``scope=bucket``).

The run lasts ``train.epochs`` passes over each worker's data, capped at ``train.steps``. Step s
(1-based) updates with the learning rate the schedule gives it and logs the training loss at the
parameters it started from, and the task's metrics (at epoch ends, every ``log.eval_every`` steps
and at the last step also the held-out ``eval/`` metrics) at the parameters it produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sparsetrain.config import JobConfig
from sparsetrain.exchange import CommStats, dense_bytes
from sparsetrain.layout import WorkerLayout
from sparsetrain.metrics import MetricsLogger, NullLogger
from sparsetrain.net.cost import parse_rate
from sparsetrain.progress import Progress
from sparsetrain.summary import hparams
from sparsetrain.timing import Stopwatch
from sparsetrain.train import state
from sparsetrain.train.build import build_components
from sparsetrain.train.faults import install_faults
from sparsetrain.train.gradients import Gradients
from sparsetrain.train.guards import NonfiniteGradient, NonfiniteGuard, RejectGuard
from sparsetrain.train.rows import LocalMeasurements, MetricRows

__all__ = ["Trainer"]


class Trainer:
    def __init__(
        self, job: JobConfig, run_dir: Path, layout: WorkerLayout, device: torch.device, local_world_size: int = 1
    ) -> None:
        self.job, self.run_dir, self.layout, self.device = job, run_dir, layout, device
        self.local_world_size = local_world_size
        self.parts = build_components(job, layout, device)
        install_faults(job.fault, self.parts.task, layout, run_dir)
        self.nonfinite = NonfiniteGuard(
            job.train.nonfinite, self.parts.gradients.all_compressors, self.parts.task.flat_params
        )
        self.reject = RejectGuard(job.train.reject_factor)
        self.dense_bytes = dense_bytes(self.parts.task.dim, layout.num_workers)
        self.model_link = (parse_rate(job.net.model_bandwidth), job.net.model_latency_us * 1e-6)
        self.bytes_total = 0.0
        self.exchanges: set[str] = set()
        self.step_watch = Stopwatch(device)
        self.ratio = job.ratio

    def run(self) -> dict[str, float]:
        """Train from the newest checkpoint (or the start) to the last step; returns the final
        metrics (on every rank). Whatever was measured is logged even when a step fails."""
        start = state.restore(self.run_dir, self.layout, self.device, self.load_state_dict)
        logger = (
            MetricsLogger(self.run_dir, hparams(self.job), self.job.log.tensorboard, resume_step=start)
            if self.layout.rank == 0 else NullLogger()
        )
        rows = MetricRows(self.layout, self.device, logger, self.job.log.every, self.parts.gradients.stat_names,
                          last=dict(logger.last))
        steps = self.parts.steps
        progress = Progress(steps, start, self.parts.steps_per_epoch, self.layout.rank == 0 and self.job.log.progress)
        try:
            for step in range(start + 1, steps + 1):
                result = self.step(step)
                stats = result.stats
                self.bytes_total += stats.bytes_sent * self.layout.num_workers
                self.exchanges.add("allreduce" if stats.summed or self.parts.gradients.dense else "allgather")
                evaluated = self.parts.task.evaluate() if self.eval_due(step) else {}
                if evaluated or step % self.job.log.every == 0 or step == steps:
                    measured = LocalMeasurements(
                        float(result.loss_sum), result.select_ms, result.comm_ms, result.comm_total_ms,
                        self.step_watch.ms, result.compressor_sums,
                    )
                    rows.record(step, measured, self.shared_metrics(step, stats, evaluated))
                checkpoint_due = self.job.ckpt.every and (step % self.job.ckpt.every == 0 or step == steps)
                if rows.due or step == steps or checkpoint_due:
                    rows.flush()
                if checkpoint_due:
                    state.save(self.run_dir, step, self.layout, self.local_world_size, self.state_dict(step))
                progress.update(step, rows.last)
        except NonfiniteGradient:  # raised on every rank at the same step: the rows can still be averaged
            rows.flush()
            raise
        except BaseException:
            rows.flush_local()
            raise
        finally:
            logger.close()
            progress.close()
        return rows.last

    def step(self, step: int) -> Gradients:
        """One synchronous step; returns the hosted workers' summed loss, the traffic and timings."""
        task, gradients, optimizer = self.parts.task, self.parts.gradients, self.parts.optimizer
        self.step_watch.reset()
        optimizer.lr = self.parts.schedule(step)
        ratio = self.parts.density(step)
        if ratio != self.ratio:
            self.ratio = ratio
            gradients.set_ratio(ratio)
        with self.step_watch:
            # Forward and backward, compression (error feedback inside) and the exchange: the
            # average over all workers ends in the local gradient's buffer.
            result = gradients(step)
            gbar = task.flat_grad
            # Update, unless a guard refuses the step.
            if self.nonfinite.admits(gbar, step):
                gradients.observe(gbar)
                if self.reject.admits(gbar):
                    optimizer.step(gbar)
        return result

    def eval_due(self, step: int) -> bool:
        """Evaluate at every epoch end, every ``log.eval_every`` steps and at the last step."""
        every = self.job.log.eval_every
        return step == self.parts.steps or step % self.parts.steps_per_epoch == 0 or bool(every and step % every == 0)

    def shared_metrics(self, step: int, stats: CommStats, evaluated: dict[str, float]) -> dict[str, float]:
        """This step's metrics that are identical on every process: traffic as the wire carries it
        (:mod:`sparsetrain.exchange`) and its α-β time on the model's link."""
        if stats.bytes_sent:
            compression = self.dense_bytes / stats.bytes_sent
        else:  # a single worker: nothing crosses a wire, for dense or sparse
            compression = 1.0 if self.dense_bytes == 0 else float("nan")
        return {
            **self.parts.task.metrics(),
            **evaluated,
            "train/lr": self.parts.optimizer.lr,
            **({"comm/ratio": self.ratio} if self.job.ratio_warmup else {}),
            "train/epoch": step / self.parts.steps_per_epoch,
            "comm/bytes_sent": stats.bytes_sent,
            "comm/bytes_received": stats.bytes_received,
            "comm/payload_bytes": stats.payload_bytes,
            "comm/bytes_total": self.bytes_total,
            "comm/compression": compression,
            "comm/selected": stats.selected,
            "comm/selected_max": stats.selected_max,
            "comm/allreduce": float(stats.summed or self.parts.gradients.dense),
            "time/comm_model_ms": 1e3 * sum(c.seconds(*self.model_link) for c in stats.collectives),
            **self.reject.metrics(),
            **self.nonfinite.metrics(),
        }

    def state_dict(self, step: int) -> dict[str, Any]:
        """This rank's whole training state after ``step``: enough to continue bit for bit."""
        return {
            "step": step,
            "params": self.parts.task.flat_params,
            "task": self.parts.task.state_dict(),
            "optimizer": self.parts.optimizer.state_dict(),
            "compressors": self.parts.gradients.state_dict(),
            "counters": {"bytes_total": self.bytes_total, **self.reject.state_dict(), **self.nonfinite.state_dict()},
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.parts.task.flat_params.copy_(saved["params"])
        self.parts.task.load_state_dict(saved["task"])
        self.parts.optimizer.load_state_dict(saved["optimizer"])
        self.parts.gradients.load_state_dict(saved["compressors"])
        counters = saved["counters"]
        self.bytes_total = counters["bytes_total"]
        self.reject.load_state_dict(counters)
        self.nonfinite.load_state_dict(counters)
        torch.set_rng_state(saved["rng"])
