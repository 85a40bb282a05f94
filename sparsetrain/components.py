"""Build a task or compressor from its config entry: ``_target_`` plus keyword arguments.

Like ``hydra.utils.instantiate`` for a flat entry, but the runtime arguments (layout, device, ...)
are passed as they are rather than merged into an OmegaConf node, and ``name`` (a label for logs
and summaries) is not passed on. Workers receive plain dicts, never Hydra configs.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import get_class

__all__ = ["component_class", "build"]


def component_class(entry: dict[str, Any]) -> type:
    """The class named by ``entry["_target_"]`` (ImportError/ValueError if it cannot be imported)."""
    return get_class(entry["_target_"])


def build(entry: dict[str, Any], **runtime: Any) -> Any:
    """``cls(**options, **runtime)`` for the class and options of a config entry."""
    options = {k: v for k, v in entry.items() if not k.startswith("_") and k != "name"}
    return component_class(entry)(**options, **runtime)
