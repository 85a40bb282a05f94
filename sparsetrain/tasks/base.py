"""The task interface the trainer drives."""

from __future__ import annotations

from typing import Any

import torch

from sparsetrain.layout import WorkerLayout
from sparsetrain.tasks.flat_module import FlatModule

__all__ = ["Task"]


class Task:
    """A model replicated on every process and one data shard per hosted logical worker.

    Constructed as ``cls(layout=..., device=..., seed=..., **options)``; the options are the other
    keyword parameters of ``__init__``, so a task owns its config keys
    (:mod:`sparsetrain.components`) and checks them in :meth:`check`. The model's parameters live
    in one flat float32 buffer ``flat_params`` and their gradients in ``flat_grad`` (a model's
    tensors are views into both), so compressors select over the whole model at once, the exchange
    writes the averaged gradient straight where the optimizer reads it, and the optimizer
    (:class:`~sparsetrain.optim.FlatSGD`) updates the whole model in a few fused ops.
    ``decay_size``: weight decay applies to ``flat_params[:decay_size]`` (all by default).

    ``model``: the network whose backward writes ``flat_grad``, where there is one (None: the
    gradient has a closed form, as linear regression's), and ``flat``, the
    :class:`~sparsetrain.tasks.flat_module.FlatModule` that holds its parameters and gradients:
    with ``compressor.scope=bucket`` the trainer streams each gradient into ``flat_grad`` as
    backward computes it (:meth:`~sparsetrain.tasks.flat_module.FlatModule.streaming`) and
    exchanges each stretch of it that backward has filled.
    """

    runtime_arguments = ("layout", "device", "seed")
    """Constructor arguments the trainer supplies; every other keyword parameter is a config key."""
    flat_params: torch.Tensor
    flat_grad: torch.Tensor
    model: torch.nn.Module | None = None
    flat: FlatModule | None = None

    def __init__(self, layout: WorkerLayout, device: torch.device, seed: int) -> None:
        self.layout = layout
        self.device = device
        self.seed = seed

    @property
    def dim(self) -> int:
        return self.flat_params.numel()

    @classmethod
    def check(cls, options: dict[str, Any], num_workers: int) -> None:
        """Raise a :class:`~sparsetrain.errors.ConfigError` naming ``task.<key>`` for an option
        (defaults filled in) this task cannot run with in a job of ``num_workers`` logical
        workers. No I/O: the CLI calls it for every job of a sweep before any starts."""

    @classmethod
    def prepare(cls, options: dict[str, Any], num_workers: int) -> None:
        """Make the task's inputs available (a download, say), once per node in the launching
        process before any worker starts. May normalise ``options`` in place (an absolute data
        path); raises :class:`~sparsetrain.errors.ConfigError`."""

    @classmethod
    def describe_data(cls, options: dict[str, Any]) -> str:
        """What the run trains on, for summary.json."""
        return "generated from the seed"

    @property
    def decay_size(self) -> int:
        return self.dim

    @property
    def steps_per_epoch(self) -> int:
        """Steps in one pass over each worker's data (``train.epochs`` counts these)."""
        return 1

    def local_gradient(self, local_worker: int, step: int, accumulate: bool = False) -> torch.Tensor:
        """Write hosted worker ``local_worker``'s gradient at the current parameters into
        ``flat_grad`` (``accumulate``: add it to what ``flat_grad`` holds) and return its training
        loss (a scalar tensor)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """State beyond the parameters that a checkpoint must keep (data-order position, buffers)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def metrics(self) -> dict[str, float]:
        """Cheap task metrics of the current parameters, logged every ``log.every`` steps (the
        same on every process), e.g. distance to x*."""
        return {}

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics (``eval/...``), run every ``log.eval_every`` steps, at every epoch end
        and at the last step; every process calls it and gets the same numbers."""
        return {}
