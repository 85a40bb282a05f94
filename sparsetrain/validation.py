"""Check a composed config and resolve its ``auto`` values before any worker starts.

Every problem is a :class:`ConfigError` whose message names the key, the bad value and what is
allowed, printed by the CLI as one line with exit code 2.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from sparsetrain.components import component_class
from sparsetrain.compressors.base import Compressor
from sparsetrain.schedule import SCHEDULES
from sparsetrain.tasks.base import Task

__all__ = ["ConfigError", "check_number", "resolve_job"]


class ConfigError(ValueError):
    """A configuration value that cannot run; the message is meant for the user as it is."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_number(
    config: dict[str, Any],
    dotted: str,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    integer: bool = False,
    nullable: bool = False,
) -> None:
    """Raise a :class:`ConfigError` naming ``dotted`` unless ``config[dotted]`` (a path of keys,
    ``"train.lr"``) is a number in [low, high] ((low, high] if ``low_open``), an integer if
    ``integer``, or absent/null if ``nullable``. Booleans are not numbers here."""
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if nullable and node is None:
        return
    ok = isinstance(node, int if integer else (int, float)) and not isinstance(node, bool)
    ok = ok and (node > low if low_open else node >= low) and node <= high
    bound = f"> {low}" if low_open else f">= {low}"
    allowed = ("null or " if nullable else "") + ("an integer " if integer else "a number ") + bound
    allowed += f" and <= {high}" if high != math.inf else ""
    _require(ok, f"{dotted}={node!r} is not allowed: use {allowed}")


def _component(job: dict[str, Any], group: str, base: type) -> None:
    entry = job[group]
    _require(isinstance(entry, dict) and "_target_" in entry, f"{group} needs a _target_ class path")
    try:
        cls = component_class(entry)
    except Exception as error:  # hydra wraps import errors in several types
        raise ConfigError(
            f"{group}._target_={entry['_target_']!r} cannot be imported ({error.__class__.__name__}): "
            f"check the module is on PYTHONPATH"
        ) from None
    _require(
        isinstance(cls, type) and issubclass(cls, base),
        f"{group}._target_={entry['_target_']!r} is not a subclass of {base.__module__}.{base.__name__}",
    )


def resolve_job(job: dict[str, Any], *, visible_gpus: int | None = None) -> dict[str, Any]:
    """Validate ``job`` (the resolved config as plain data) and fill in its ``auto`` dist values."""
    gpus = torch.cuda.device_count() if visible_gpus is None else visible_gpus
    check_number(job, "ratio", 0, 1, low_open=True)
    _require(isinstance(job["seed"], int), f"seed={job['seed']!r} is not allowed: use an integer")
    train = job["train"]
    _require(
        train.get("epochs") is not None or train.get("steps") is not None,
        "train.epochs and train.steps are both null: set train.epochs=<passes over the data> or train.steps=<n>",
    )
    check_number(job, "train.epochs", 0, low_open=True, nullable=True)
    check_number(job, "train.steps", 1, integer=True, nullable=True)
    check_number(job, "train.lr", 0)
    check_number(job, "train.momentum", 0, 1)
    _require(
        not train.get("nesterov") or train["momentum"] > 0,
        "train.nesterov=true needs train.momentum > 0: set train.momentum (e.g. 0.9) or train.nesterov=false",
    )
    check_number(job, "train.weight_decay", 0)
    _require(
        train.get("lr_schedule", "constant") in SCHEDULES,
        f"train.lr_schedule={train.get('lr_schedule')!r} is not allowed: use one of {', '.join(SCHEDULES)}",
    )
    if "warmup_epochs" in train:
        check_number(job, "train.warmup_epochs", 0)
    if "gamma" in train:
        check_number(job, "train.gamma", 0, 1, low_open=True)
    milestones = train.get("milestones", [])
    _require(
        isinstance(milestones, list) and all(isinstance(m, (int, float)) and 0 < m < 1 for m in milestones),
        f"train.milestones={milestones!r} is not allowed: use a list of fractions of the run between 0 and 1",
    )
    check_number(job, "log.every", 1)
    check_number(job, "log.eval_every", 1, nullable=True)
    check_number(job, "train.reject_factor", 1, nullable=True)
    _require(
        job["train"].get("nonfinite", "error") in ("error", "skip"),
        f"train.nonfinite={job['train'].get('nonfinite')!r} is not allowed: use error or skip",
    )
    check_number(job, "ckpt.every", 0)
    _component(job, "task", Task)
    _component(job, "compressor", Compressor)
    if "mu" in job["compressor"]:
        check_number(job, "compressor.mu", 0, low_open=True)

    d = job["dist"]
    _require(d["device"] in ("auto", "cpu", "cuda"), f"dist.device={d['device']!r} is not allowed: use auto, cpu or cuda")
    if d["device"] == "auto":
        d["device"] = "cuda" if gpus > 0 else "cpu"
    _require(
        d["device"] == "cpu" or gpus > 0,
        "dist.device=cuda but no GPU is visible: use dist.device=cpu (or auto)",
    )
    _require(d["backend"] in ("auto", "gloo", "nccl"), f"dist.backend={d['backend']!r} is not allowed: use auto, gloo or nccl")
    if d["backend"] == "auto":
        d["backend"] = "nccl" if d["device"] == "cuda" else "gloo"
    _require(
        not (d["backend"] == "nccl" and d["device"] == "cpu"),
        "dist.backend=nccl needs dist.device=cuda: use dist.backend=gloo for CPU workers",
    )
    if d["nproc"] == "auto":
        d["nproc"] = gpus if d["device"] == "cuda" else 2
    check_number(job, "dist.nproc", 1)
    _require(isinstance(d["nproc"], int), f"dist.nproc={d['nproc']!r} is not allowed: use auto or an integer >= 1")
    _require(
        d["device"] == "cpu" or d["nproc"] <= gpus,
        f"dist.nproc={d['nproc']} asks for more GPUs than the {gpus} visible: use dist.nproc<={gpus} or auto",
    )
    check_number(job, "dist.nnodes", 1)
    _require(
        isinstance(d["node_rank"], int) and 0 <= d["node_rank"] < d["nnodes"],
        f"dist.node_rank={d['node_rank']!r} is not allowed: use 0 .. dist.nnodes-1 ({d['nnodes'] - 1})",
    )
    _require(
        d["nnodes"] == 1 or bool(d["rdzv_endpoint"]),
        "dist.nnodes>1 needs dist.rdzv_endpoint=<node 0 host>:<port>",
    )
    check_number(job, "dist.max_restarts", 0)
    fault = job.get("fault") or {}
    for key in ("at_step", "nonfinite_at_step"):
        check_number(job, f"fault.{key}", 1, nullable=True)
    if fault.get("kill_rank") is not None:
        _require(
            isinstance(fault["kill_rank"], int) and 0 <= fault["kill_rank"] < d["nproc"] * d["nnodes"]
            and fault.get("at_step") is not None,
            f"fault.kill_rank={fault['kill_rank']!r} is not allowed: use a rank below "
            f"{d['nproc'] * d['nnodes']}, with fault.at_step",
        )
    processes = d["nproc"] * d["nnodes"]
    if d["workers"] is None:
        d["workers"] = processes
    _require(
        isinstance(d["workers"], int) and d["workers"] >= processes and d["workers"] % processes == 0,
        f"dist.workers={d['workers']!r} is not allowed: use a multiple of the {processes} processes "
        f"(dist.nproc * dist.nnodes), or change dist.nproc",
    )
    return job
