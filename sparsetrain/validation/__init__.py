"""Check a composed job and resolve its ``auto`` values, before any worker starts.

:func:`check_job` runs :mod:`~sparsetrain.validation.schema` (keys, strict types, ranges and a
component's own keys) and :mod:`~sparsetrain.validation.rules` (rules across keys, dist and net),
then the task's and compressor's own ``check``. Every problem is one
:class:`~sparsetrain.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsetrain.config import JobConfig
from sparsetrain.validation import rules
from sparsetrain.validation.schema import SCHEMA_TYPES, build, check_types, check_value, closest, component, describe_type

__all__ = ["SCHEMA_TYPES", "check_job", "check_value", "closest", "describe_type"]


def check_job(job: dict[str, Any], overrides: list[str] = (), *, visible_gpus: int | None = None) -> JobConfig:
    """Check ``job`` (the composed config as plain data, with the command line's ``overrides``),
    fill in its ``auto`` values and return it as a :class:`~sparsetrain.config.JobConfig`."""
    task_cls, task_options = component(job, "task")
    compressor_cls, compressor_options = component(job, "compressor")
    check_types(job, list(overrides))
    rules.check_train(job["train"])
    rules.resolve_dist(job["dist"], torch.cuda.device_count() if visible_gpus is None else visible_gpus)
    rules.check_fault(job["fault"], job["dist"]["nproc"] * job["dist"]["nnodes"])
    rules.check_net(job, compressor_cls)
    rules.check_scope(compressor_options, compressor_cls, job["dist"])
    rules.check_ratio_warmup(job, compressor_cls)
    rules.check_momentum(job, compressor_cls)
    task_cls.check({k: v for k, v in task_options.items() if k != "_target_"}, num_workers=job["dist"]["workers"])
    compressor_cls.check({k: v for k, v in compressor_options.items() if k != "_target_"})
    return build(JobConfig, {**job, "task": task_options, "compressor": compressor_options})
