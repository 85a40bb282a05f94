"""Training tasks: the model, its data shards and the task's own metrics.

A task is chosen by config (``task=linreg``) or by class path (``task._target_=mypkg.MyTask``)
and built by :func:`sparsetrain.components.build` from its ``_target_`` and options; see
:class:`~sparsetrain.tasks.base.Task` for the interface.
"""

from sparsetrain.tasks.base import Task

__all__ = ["Task"]
