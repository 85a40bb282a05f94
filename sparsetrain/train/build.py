"""Build a rank's training components from the job: task, compressors, exchange, optimizer, schedule."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsetrain.components import build
from sparsetrain.compressors.base import Compressor
from sparsetrain.config import JobConfig
from sparsetrain.exchange import DenseExchange, SparseExchange, build_exchange
from sparsetrain.layout import WorkerLayout
from sparsetrain.optim import FlatSGD
from sparsetrain.schedule import LRSchedule, total_steps
from sparsetrain.tasks.base import Task

__all__ = ["Components", "build_components"]


@dataclass
class Components:
    task: Task
    compressors: list[Compressor]
    """One per logical worker this process hosts, in worker order."""
    exchange: DenseExchange | SparseExchange
    optimizer: FlatSGD
    schedule: LRSchedule
    steps: int
    steps_per_epoch: int
    k: int


def build_components(job: JobConfig, layout: WorkerLayout, device: torch.device) -> Components:
    train = job.train
    task: Task = build(job.task, layout=layout, device=device, seed=job.seed)
    steps = total_steps(train.epochs, train.steps, task.steps_per_epoch)
    compressors = [
        build(job.compressor, dim=task.dim, ratio=job.ratio, worker=worker, num_workers=layout.num_workers,
              seed=job.seed, device=device)
        for worker in layout.worker_ids
    ]
    k = compressors[0].k
    return Components(
        task=task,
        compressors=compressors,
        exchange=build_exchange(type(compressors[0]), task.dim, k, layout, device, mode=job.exchange),
        optimizer=FlatSGD(
            task.flat_params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay,
            nesterov=train.nesterov, decay_size=task.dim if train.decay_norm_and_bias else task.decay_size,
        ),
        schedule=LRSchedule(
            base=train.lr, total=steps, kind=train.lr_schedule, milestones=tuple(train.milestones),
            warmup=round(train.warmup_epochs * task.steps_per_epoch), gamma=train.gamma,
        ),
        steps=steps,
        steps_per_epoch=task.steps_per_epoch,
        k=k,
    )
