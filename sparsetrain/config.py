"""The configuration schema: one dataclass per section, a doc line under every field.

Registered in Hydra's ConfigStore as ``sparsetrain_schema``, the first entry of
``conf/config.yaml``'s defaults, so Hydra refuses unknown keys and ill-typed values while it
composes, and ``sparsetrain --cfg job`` prints every key. Each default lives here, once; a task's
yaml sets its own ``train.*`` recipe on top. A field's metadata holds its range or its choices,
which :mod:`sparsetrain.validation` checks together with the rules that span several keys.

``task`` and ``compressor`` are config groups whose keys belong to the class their ``_target_``
names (:func:`sparsetrain.components.options`): :func:`component_schema` turns a class's
signature into a structured config, registered for the built-in classes as
``schema/<group>/<name>`` and pulled in by their yaml files.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING

from sparsetrain.components import options

__all__ = [
    "JobConfig", "DistConfig", "TrainConfig", "CkptConfig", "FaultConfig", "LogConfig", "NetConfig",
    "DEFAULT_MODEL_BANDWIDTH",
    "component_schema", "number", "choice",
]


def number(default: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False) -> Any:
    """A numeric field with its allowed range (checked by :mod:`sparsetrain.validation`)."""
    return field(default=default, metadata={"low": low, "high": high, "low_open": low_open})


def choice(default: str, *choices: str) -> Any:
    """A string field that takes one of ``choices``."""
    return field(default=default, metadata={"choices": (default, *choices)})


@dataclass
class DistConfig:
    """Processes, logical workers and how they meet (``dist.*``)."""

    nproc: Any = "auto"
    """Processes per node: an integer, or auto (one per visible GPU, else 2 CPU processes)."""
    workers: Optional[int] = number(None, 1)
    """Logical workers in all (P in the papers); null: one per process. Each process hosts
    workers / (nnodes * nproc) of them, each with its own data shard and compressor state."""
    nnodes: int = number(1, 1)
    """Nodes in the job; each node runs ``sparsetrain`` with its own dist.node_rank."""
    node_rank: int = number(0, 0)
    """This node's index, 0 .. nnodes-1; node 0 hosts rank 0, the run's metrics and summary."""
    rdzv_endpoint: Optional[str] = None
    """host:port of node 0's rendezvous for multi-node jobs; single-node jobs pick a free local port."""
    backend: str = choice("auto", "gloo", "nccl")
    """auto: nccl on GPU, gloo otherwise."""
    device: str = choice("auto", "cpu", "cuda")
    """auto: cuda when a GPU is visible, else cpu."""
    max_restarts: int = number(0, 0)
    """Elastic restarts of the whole group after a worker dies (it resumes from its last checkpoint)."""
    timeout_s: float = number(600.0, 0, low_open=True)
    """Seconds a collective may wait for a peer before the job fails."""
    join_timeout_s: float = number(600.0, 0, low_open=True)
    """Seconds a node waits for the other nodes of a multi-node job to join before it gives up."""


@dataclass
class TrainConfig:
    """The optimisation (``train.*``); a task's yaml sets its recipe."""

    epochs: Optional[float] = number(None, 0, low_open=True)
    """Passes over each worker's data; null: train.steps alone sets the length."""
    steps: Optional[int] = number(None, 1)
    """Cap on the number of steps (alone: the run's length)."""
    lr: float = number(0.01, 0)
    """Base learning rate."""
    lr_schedule: str = choice("constant", "cosine", "step")
    """After warm-up: constant, cosine decay or step decay (sparsetrain/schedule.py)."""
    warmup_epochs: float = number(0.0, 0)
    """Linear warm-up from 0 over this many epochs (fractions allowed)."""
    milestones: List[float] = field(default_factory=lambda: [0.5, 0.75])
    """Step schedule: lr *= gamma after each of these fractions of the run."""
    gamma: float = number(0.1, 0, 1, low_open=True)
    """Step schedule's factor."""
    momentum: float = number(0.0, 0, 1)
    """SGD momentum, applied after aggregation."""
    nesterov: bool = False
    """Nesterov momentum (needs momentum > 0)."""
    weight_decay: float = number(0.0, 0)
    """L2 weight decay, applied after aggregation."""
    decay_norm_and_bias: bool = True
    """false: no weight decay on batch-norm scales/shifts and biases."""
    reject_factor: Optional[float] = number(None, 1)
    """Skip a step whose aggregate's squared norm exceeds this many times the last accepted one, as
    the RegTop-k authors' script does with 100; not part of any algorithm, so null (off)."""
    nonfinite: str = choice("error", "skip")
    """NaN/Inf in the averaged gradient: error stops (the last checkpoint is kept); skip drops the
    step on every rank, and stops if the parameters themselves become non-finite."""


@dataclass
class CkptConfig:
    """Checkpoints (``ckpt.*``)."""

    every: int = number(1000, 0)
    """Checkpoint every this many steps and at the end; 0: no checkpoints."""


@dataclass
class FaultConfig:
    """Fault injection, for tests (``fault.*``)."""

    kill_rank: Optional[int] = number(None, 0)
    """This rank dies abruptly (SIGKILL) once, at step fault.at_step."""
    at_step: Optional[int] = number(None, 1)
    """The step at which fault.kill_rank dies."""
    nonfinite_at_step: Optional[int] = number(None, 1)
    """Worker 0's gradient gets a NaN at this step."""


@dataclass
class LogConfig:
    """What is logged and how often (``log.*``)."""

    every: int = number(1, 1)
    """Write metrics every this many steps (and always at the last step)."""
    eval_every: Optional[int] = number(None, 1)
    """Also evaluate every this many steps (always: at epoch ends and the last step)."""
    tensorboard: bool = True
    """Also write TensorBoard event files beside metrics.jsonl."""
    progress: bool = True
    """Rank 0's progress bar on stderr (silent anyway when stderr is not a terminal)."""


@dataclass
class NetConfig:
    """The network: a shaped link to run on, and the cost model's link (``net.*``)."""

    bandwidth: Optional[str] = None
    """Each host's link speed to run on, in tc's units (1gbit, 100mbit): the job runs in a private
    network namespace whose loopback is shaped to that (sparsetrain/net/shaping.py); null: no shaping."""
    model_bandwidth: Optional[str] = None
    """Link speed of the α-β cost model behind time/comm_model_ms; null: net.bandwidth, else 10gbit."""
    model_latency_us: float = number(10.0, 0)
    """Latency of one step of a ring collective in the cost model (α), in microseconds."""


DEFAULT_MODEL_BANDWIDTH = "10gbit"
"""The cost model's link when neither net.model_bandwidth nor net.bandwidth is set."""


@dataclass
class JobConfig:
    """One run: what is trained (task), how gradients are compressed, and every setting above."""

    task: Any = MISSING
    """Config group: cifar10 or linreg, or any Task subclass via task._target_."""
    compressor: Any = MISSING
    """Config group: dense, topk, gaussiank, regtopk, randomk, or any Compressor via compressor._target_."""
    ratio: float = number(0.01, 0, 1, low_open=True)
    """Density k/d shared by every compressor; k = max(1, floor(ratio * d))."""
    ratio_warmup: List[float] = field(default_factory=list)
    """Density warm-up: the ratio of epochs 0, 1, ... before ``ratio`` applies, for every sparse
    compressor (sparsetrain/schedule.py); the Gaussian-k authors: [0.015625,0.004] (ratio 0.001),
    DGC: [0.25,0.0625,0.015625,0.004] (ratio 0.001); empty: none."""
    seed: int = number(0, 0, 2**63 - 1)
    """Seeds the data, the model and every random choice; a run is deterministic on CPU for a seed and layout."""
    exchange: str = choice("auto", "allgather", "allreduce")
    """How sparse payloads travel: all-gathered, or summed densely and all-reduced; auto: whichever
    puts fewer bytes on the wire (sparsetrain/exchange.py)."""
    resume: Optional[str] = None
    """Continue a stopped run in place: resume=<run dir> (its saved config is used as it was)."""
    dist: DistConfig = field(default_factory=DistConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ckpt: CkptConfig = field(default_factory=CkptConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)
    log: LogConfig = field(default_factory=LogConfig)
    net: NetConfig = field(default_factory=NetConfig)


def _omegaconf_type(hint: Any) -> Any:
    """The nearest annotation OmegaConf 2.3 accepts for a type hint: primitives, Optional,
    List; anything else is Any (checked by the component itself)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (bool, int, float, str):
        return hint
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return Optional[_omegaconf_type(inner[0])] if len(inner) == 1 else Any
    if origin in (list, tuple) and args and args[0] in (bool, int, float, str):
        return List[args[0]]
    return Any


def component_schema(target: str, cls: type) -> type:
    """A structured config for component class ``cls``: ``_target_`` and its options
    (:func:`~sparsetrain.components.options`), with their types and defaults."""
    fields: list[tuple[str, Any, Any]] = [("_target_", str, field(default=target))]
    for name, p in options(cls).items():
        default = MISSING if p.default is p.empty else p.default
        if isinstance(default, (list, dict, tuple)):
            fields.append((name, _omegaconf_type(p.annotation), field(default_factory=lambda d=default: list(d))))
        else:
            fields.append((name, _omegaconf_type(p.annotation), field(default=default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)
