"""Rules that span keys, and the ``auto`` values resolved from the machine.

Nesterov needs momentum, a fault needs its step, workers must divide over processes, a shaped link
needs one machine that can shape it, ... Each problem is a
:class:`~sparsetrain.errors.ConfigError` naming the key and the fix.
"""

from __future__ import annotations

from typing import Any

from sparsetrain import components
from sparsetrain.compressors.base import SCOPES
from sparsetrain.config import DEFAULT_MODEL_BANDWIDTH
from sparsetrain.errors import ConfigError, check_number, require
from sparsetrain.launch import in_torchrun_worker
from sparsetrain.net import shaping
from sparsetrain.net.cost import RATE_EXAMPLE, parse_rate

__all__ = [
    "check_train", "check_fault", "check_net", "check_momentum", "check_ratio_warmup", "check_scope", "resolve_dist",
]


def check_train(train: dict[str, Any]) -> None:
    require(
        train["epochs"] is not None or train["steps"] is not None,
        "train.epochs and train.steps are both null: set train.epochs=<passes over the data> or train.steps=<n>",
    )
    require(
        not train["nesterov"] or train["momentum"] > 0,
        "train.nesterov=true needs train.momentum > 0: set train.momentum (e.g. 0.9) or train.nesterov=false",
    )
    require(
        all(0 < m < 1 for m in train["milestones"]),
        f"train.milestones={train['milestones']!r} is not allowed: use a list of fractions of the run between 0 and 1",
    )


def check_fault(fault: dict[str, Any], processes: int) -> None:
    require(
        fault["kill_rank"] is None or (fault["kill_rank"] < processes and fault["at_step"] is not None),
        f"fault.kill_rank={fault['kill_rank']!r} is not allowed: use a rank below {processes}, with fault.at_step",
    )


def check_net(job: dict[str, Any], compressor_cls: type) -> None:
    """Rates parse; a dense compressor has no sparse exchange to choose; a shaped link needs the
    job on one node, launched by sparsetrain, on a machine that can shape; the model's link is
    resolved."""
    net = job["net"]
    for key in ("bandwidth", "model_bandwidth"):
        if net[key] is not None:
            try:
                parse_rate(net[key])
            except ValueError:
                raise ConfigError(f"net.{key}={net[key]!r} is not allowed: use a rate like {RATE_EXAMPLE}") from None
    require(
        not compressor_cls.dense or job["exchange"] == "auto",
        f"exchange={job['exchange']} chooses how sparse payloads travel; compressor=dense always all-reduces: "
        f"drop exchange=",
    )
    if net["bandwidth"] is not None:
        require(job["dist"]["nnodes"] == 1, "net.bandwidth emulates a link on one machine: use dist.nnodes=1")
        require(job["dist"]["device"] == "cpu", "net.bandwidth shapes the loopback that gloo uses: use dist.device=cpu")
        require(not in_torchrun_worker(), "net.bandwidth needs sparsetrain to launch the workers, not torchrun: run sparsetrain")
        problem = shaping.unavailable()
        require(problem is None, f"net.bandwidth={net['bandwidth']} cannot shape a link here: {problem}")
    net["model_bandwidth"] = net["model_bandwidth"] or net["bandwidth"] or DEFAULT_MODEL_BANDWIDTH


def check_ratio_warmup(job: dict[str, Any], compressor_cls: type) -> None:
    """A list of densities in (0, 1], for a compressor that sends a fraction of the gradient."""
    warmup = job["ratio_warmup"]
    require(
        all(isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in warmup),
        f"ratio_warmup={warmup!r} is not allowed: use a list of densities in (0, 1], one per warm-up epoch, "
        f"e.g. ratio_warmup=[0.015625,0.004]",
    )
    require(
        not (warmup and compressor_cls.dense),
        "ratio_warmup schedules the density of sparse compressors; compressor=dense sends everything: drop ratio_warmup",
    )


def check_momentum(job: dict[str, Any], compressor_cls: type) -> None:
    """A compressor that applies momentum itself (DGC's momentum correction) needs the optimizer's off."""
    train = job["train"]
    require(
        not getattr(compressor_cls, "applies_momentum", False) or (train["momentum"] == 0 and not train["nesterov"]),
        f"compressor={components.label('compressor', job['compressor']['_target_'])} applies momentum on each worker "
        f"before sparsifying (compressor.momentum, compressor.nesterov); the optimizer's must be off: set "
        f"train.momentum=0 train.nesterov=false",
    )


def check_scope(compressor: dict[str, Any], compressor_cls: type, dist: dict[str, Any]) -> None:
    """``compressor.scope`` is one of SCOPES and ``compressor.bucket_mb`` a size; a sparse bucket is
    one worker's gradient, so a sparse compressor per bucket needs one logical worker per process
    (after :func:`resolve_dist`)."""
    scope = compressor.get("scope", "model")
    require(scope in SCOPES, f"compressor.scope={scope!r} is not allowed: use one of {', '.join(SCOPES)}")
    if "bucket_mb" in compressor:
        check_number("compressor.bucket_mb", compressor["bucket_mb"], 0, low_open=True)
    hosted = dist["workers"] // (dist["nproc"] * dist["nnodes"])
    require(
        scope == "model" or compressor_cls.dense or hosted == 1,
        f"compressor.scope=bucket compresses each process's buckets as one worker's, but each process hosts "
        f"{hosted} workers: use compressor.scope=model, or dist.workers=null (one per process)",
    )


def resolve_dist(d: dict[str, Any], gpus: int) -> None:
    """Fill in dist.device, dist.backend, dist.nproc and dist.workers where they are auto/null."""
    if d["device"] == "auto":
        d["device"] = "cuda" if gpus > 0 else "cpu"
    require(d["device"] == "cpu" or gpus > 0, "dist.device=cuda but no GPU is visible: use dist.device=cpu (or auto)")
    if d["backend"] == "auto":
        d["backend"] = "nccl" if d["device"] == "cuda" else "gloo"
    require(
        not (d["backend"] == "nccl" and d["device"] == "cpu"),
        "dist.backend=nccl needs dist.device=cuda: use dist.backend=gloo for CPU workers",
    )
    if d["nproc"] == "auto":
        d["nproc"] = gpus if d["device"] == "cuda" else 2
    require(
        isinstance(d["nproc"], int) and not isinstance(d["nproc"], bool) and d["nproc"] >= 1,
        f"dist.nproc={d['nproc']!r} is not allowed: use auto or an integer >= 1",
    )
    require(
        d["device"] == "cpu" or d["nproc"] <= gpus,
        f"dist.nproc={d['nproc']} asks for more GPUs than the {gpus} visible: use dist.nproc<={gpus} or auto",
    )
    require(
        d["node_rank"] < d["nnodes"],
        f"dist.node_rank={d['node_rank']!r} is not allowed: use 0 .. dist.nnodes-1 ({d['nnodes'] - 1})",
    )
    require(d["nnodes"] == 1 or bool(d["rdzv_endpoint"]), "dist.nnodes>1 needs dist.rdzv_endpoint=<node 0 host>:<port>")
    if d["rdzv_endpoint"]:
        host, _, port = d["rdzv_endpoint"].rpartition(":")
        require(
            bool(host) and port.isdigit() and 0 < int(port) < 65536,
            f"dist.rdzv_endpoint={d['rdzv_endpoint']!r} is not allowed: use <host>:<port>, e.g. node0:29500",
        )
    processes = d["nproc"] * d["nnodes"]
    if d["workers"] is None:
        d["workers"] = processes
    require(
        d["workers"] >= processes and d["workers"] % processes == 0,
        f"dist.workers={d['workers']!r} is not allowed: use a multiple of the {processes} processes "
        f"(dist.nproc * dist.nnodes), or change dist.nproc",
    )


