"""Training tasks: the model, its data shards and the task's own metrics.

A task is chosen by config (``task=linreg``) and built with ``hydra.utils.instantiate`` from its
``_target_``; see :class:`~sparsetrain.tasks.base.Task` for the interface.
"""

from sparsetrain.tasks.base import Task

__all__ = ["Task"]
