"""Build a rank's training components from the job: task, gradients (compressors and exchange),
optimizer, schedule."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsetrain.components import build
from sparsetrain.config import JobConfig
from sparsetrain.layout import WorkerLayout
from sparsetrain.optim import FlatSGD
from sparsetrain.schedule import DensitySchedule, LRSchedule, total_steps
from sparsetrain.tasks.base import Task
from sparsetrain.train.gradients import FlatGradients, OverlappedGradients, build_gradients

__all__ = ["Components", "build_components"]


@dataclass
class Components:
    task: Task
    gradients: FlatGradients | OverlappedGradients
    optimizer: FlatSGD
    schedule: LRSchedule
    density: DensitySchedule
    steps: int
    steps_per_epoch: int


def build_components(job: JobConfig, layout: WorkerLayout, device: torch.device) -> Components:
    train = job.train
    task: Task = build(job.task, layout=layout, device=device, seed=job.seed)
    steps = total_steps(train.epochs, train.steps, task.steps_per_epoch)
    return Components(
        task=task,
        gradients=build_gradients(job.compressor, job.ratio, job.exchange, task, layout, job.seed, device),
        optimizer=FlatSGD(
            task.flat_params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay,
            nesterov=train.nesterov, decay_size=task.dim if train.decay_norm_and_bias else task.decay_size,
        ),
        schedule=LRSchedule(
            base=train.lr, total=steps, kind=train.lr_schedule, milestones=tuple(train.milestones),
            warmup=round(train.warmup_epochs * task.steps_per_epoch), gamma=train.gamma,
        ),
        density=DensitySchedule(job.ratio, tuple(job.ratio_warmup), task.steps_per_epoch),
        steps=steps,
        steps_per_epoch=task.steps_per_epoch,
    )
