"""Tasks and compressors as configurable components: a ``_target_`` class path plus its options.

A component class owns its keys: the options of a config entry are the keyword parameters of the
class's ``__init__`` (and of its bases', where it passes ``**kwargs`` on), less the runtime
arguments the trainer supplies, which the interface class names in ``runtime_arguments``
(``Task``: layout, device, seed). Their annotations are the keys'
types and their defaults the keys' defaults, so a user's class is configured exactly like ours:
``compressor._target_=mypkg.Mine +compressor.my_option=3``.

``build`` is ``hydra.utils.instantiate`` for such a flat entry, but passes the runtime arguments
(layout, device, ...) as they are instead of merging them into an OmegaConf node. Workers
receive plain data, never Hydra configs.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

__all__ = ["BUILTIN", "component_class", "options", "label", "build"]

BUILTIN: dict[str, dict[str, str]] = {
    "task": {
        "cifar10": "sparsetrain.tasks.cifar10.CIFAR10",
        "linreg": "sparsetrain.tasks.linreg.LinearRegression",
    },
    "compressor": {
        "dense": "sparsetrain.compressors.dense.Dense",
        "topk": "sparsetrain.compressors.topk.TopK",
        "gaussiank": "sparsetrain.compressors.gaussiank.GaussianK",
        "regtopk": "sparsetrain.compressors.regtopk.RegTopK",
        "randomk": "sparsetrain.compressors.randomk.RandomK",
        "dgc": "sparsetrain.compressors.dgc.DGC",
    },
}
"""The config group options sparsetrain ships, by group: ``compressor=regtopk`` names the class."""

def component_class(target: str) -> type:
    """The class a ``_target_`` path names (``module.Class``); ImportError or AttributeError when
    there is none."""
    module, _, name = target.rpartition(".")
    if not module:
        raise ImportError(f"{target!r} is not a module.Class path")
    return getattr(importlib.import_module(module), name)


def options(cls: type) -> dict[str, inspect.Parameter]:
    """The config options of component class ``cls``, by name: keyword parameters of its
    ``__init__`` and, through ``**kwargs``, of its bases' (the nearest definition wins), less
    ``cls.runtime_arguments``. Each parameter's ``annotation`` is the evaluated type hint."""
    runtime = {"self", *getattr(cls, "runtime_arguments", ())}
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            break
        hints = typing.get_type_hints(init)
        parameters = inspect.signature(init).parameters.values()
        for p in parameters:
            if p.name in runtime or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            found.setdefault(p.name, p.replace(annotation=hints.get(p.name, Any)))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return found


def label(group: str, target: str) -> str:
    """How logs and summaries name a component: its option name if it is one of ours
    (``topk``), else its class name (a user's ``mypkg.halfk.LargestHalf`` is ``LargestHalf``)."""
    for name, path in BUILTIN[group].items():
        if path == target:
            return name
    return target.rsplit(".", 1)[-1]


def build(entry: dict[str, Any], **runtime: Any) -> Any:
    """``cls(**options, **runtime)`` for the class and options of a config entry."""
    return component_class(entry["_target_"])(**{k: v for k, v in entry.items() if k != "_target_"}, **runtime)
