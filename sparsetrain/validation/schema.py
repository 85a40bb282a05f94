"""A composed job against the schema (:mod:`sparsetrain.config`): keys, types and ranges.

What Hydra's structured config does not check by itself:

* keys the schema does not know, added with ``+key=`` (the closest known key is named);
* strict types: OmegaConf reads ``2`` as ``true`` and ``"3"`` as an integer; a value given on
  the command line must already be of the key's type (booleans booleans, integers integers);
* ranges and choices, from each field's metadata;
* a task's or compressor's options, against its class's keyword parameters (the component owns
  its keys, :mod:`sparsetrain.components`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser

from sparsetrain import components
from sparsetrain.compressors.base import Compressor
from sparsetrain.config import JobConfig
from sparsetrain.errors import ConfigError, check_number, check_value, closest, describe_type, require
from sparsetrain.tasks.base import Task

__all__ = [
    "GROUP_BASES", "SCHEMA_TYPES", "build", "check_types", "check_value", "closest", "component", "describe_type",
    "known_keys",
]

GROUP_BASES = {"task": Task, "compressor": Compressor}


def component(job: dict[str, Any], group: str) -> tuple[type, dict[str, Any]]:
    """The class of ``job[group]`` and its options with the class's defaults filled in; unknown
    and ill-typed options are refused."""
    entry = job[group]
    require(isinstance(entry, dict) and "_target_" in entry, f"{group} needs a _target_ class path")
    base = GROUP_BASES[group]
    try:
        cls = components.component_class(entry["_target_"])
    except Exception as error:  # hydra wraps import errors in several types
        raise ConfigError(
            f"{group}._target_={entry['_target_']!r} cannot be imported ({type(error).__name__}): "
            f"check the module is on PYTHONPATH, or use one of {', '.join(components.BUILTIN[group])}"
        ) from None
    require(
        isinstance(cls, type) and issubclass(cls, base),
        f"{group}._target_={entry['_target_']!r} is not a subclass of {base.__module__}.{base.__name__}",
    )
    accepted = components.options(cls)
    label = components.label(group, entry["_target_"])
    for key, value in entry.items():
        if key == "_target_":
            continue
        suggestion = closest(key, list(accepted), prefix=f"{group}.")
        require(
            key in accepted,
            f"{group}.{key} is not a key of {group}={label}{suggestion}: "
            f"{label} takes {', '.join(accepted) or 'no options'}",
        )
        check_value(f"{group}.{key}", value, accepted[key].annotation)
    missing = [k for k, p in accepted.items() if p.default is p.empty and k not in entry]
    require(not missing, f"{group}={label} needs {', '.join(f'{group}.{k}' for k in missing)}")
    return cls, {**{k: p.default for k, p in accepted.items() if p.default is not p.empty}, **entry}


def _schema_types(cls: type, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> type hint for every leaf field of a schema dataclass."""
    hints = typing.get_type_hints(cls)
    found: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            found.update(_schema_types(hint, f"{prefix}{f.name}."))
        else:
            found[f"{prefix}{f.name}"] = hint
    return found


SCHEMA_TYPES = _schema_types(JobConfig)


def known_keys(job: dict[str, Any]) -> list[str]:
    """Every key this job may set: the schema's, and its task's and compressor's options."""
    keys = [k for k in SCHEMA_TYPES if k not in GROUP_BASES]
    for group in GROUP_BASES:
        try:
            cls = components.component_class(job[group]["_target_"])
            keys += [f"{group}.{k}" for k in ("_target_", *components.options(cls))]
        except Exception:
            keys.append(f"{group}._target_")
    return keys


def _unknown_keys(job: dict[str, Any], known: list[str], prefix: str = "") -> None:
    for key, value in job.items():
        dotted = f"{prefix}{key}"
        if dotted in GROUP_BASES:
            continue
        if isinstance(value, dict) and dotted not in SCHEMA_TYPES:
            _unknown_keys(value, known, dotted + ".")
        else:
            require(dotted in SCHEMA_TYPES, f"{dotted} is not a key of sparsetrain's config{closest(dotted, known)}")


def _ranges(cls: type, values: dict[str, Any], prefix: str = "") -> None:
    """Ranges and choices from the schema fields' metadata."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, value = f"{prefix}{f.name}", values.get(f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            _ranges(hints[f.name], value or {}, key + ".")
        elif "choices" in f.metadata:
            require(value in f.metadata["choices"],
                    f"{key}={value!r} is not allowed: use one of {', '.join(f.metadata['choices'])}")
        elif "low" in f.metadata:
            nullable = type(None) in typing.get_args(hints[f.name])
            integer = int in (hints[f.name], *typing.get_args(hints[f.name]))
            check_number(key, value, f.metadata["low"], f.metadata["high"], low_open=f.metadata["low_open"],
                         integer=integer, nullable=nullable)


def _raw_overrides(overrides: list[str], job: dict[str, Any]) -> None:
    """Command-line values must already have their key's type (OmegaConf would convert them)."""
    component_types = {}
    for group in GROUP_BASES:
        try:
            cls = components.component_class(job[group]["_target_"])
        except Exception:
            continue
        component_types.update({f"{group}.{k}": p.annotation for k, p in components.options(cls).items()})
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        hint = SCHEMA_TYPES.get(key, component_types.get(key))
        if override.is_delete() or hint is None or override.is_sweep_override():
            continue
        check_value(key, override.value(), hint)


def build(cls: type, data: dict[str, Any]) -> Any:
    """The schema dataclass ``cls`` holding ``data`` (already checked), nested sections included."""
    hints = typing.get_type_hints(cls)
    return cls(**{
        f.name: build(hints[f.name], data[f.name]) if dataclasses.is_dataclass(hints[f.name]) else data[f.name]
        for f in dataclasses.fields(cls) if f.name in data
    })



def check_types(job: dict[str, Any], overrides: list[str]) -> None:
    """Unknown keys, the command line's raw values, every value's type, ranges and choices."""
    _unknown_keys(job, known_keys(job))
    _raw_overrides(overrides, job)
    for key, hint in SCHEMA_TYPES.items():
        if key not in GROUP_BASES:
            section, _, name = key.rpartition(".")
            node = job.get(section, {}) if section else job
            if name in node:
                check_value(key, node[name], hint)
    _ranges(JobConfig, job)
