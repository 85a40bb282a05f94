"""Compose every job a command line asks for and check it, before Hydra runs any of them.

Hydra reports a bad override (a typo in a key, a value of the wrong type, a config group option
that does not exist) in several lines with exit code 1, and a sweep meets a bad point only when
it reaches it. :func:`check_command_line` composes each job of the command, every point of a
``-m`` sweep, with Hydra's compose API, turns what goes wrong into one
:class:`~sparsetrain.errors.ConfigError` naming the key, and checks each job
(:func:`sparsetrain.validation.check_job`). :func:`register_schemas` puts the schema
(:mod:`sparsetrain.config`) in Hydra's ConfigStore for this composition and the app's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from sparsetrain import components, rundir
from sparsetrain.config import JobConfig, component_schema
from sparsetrain.errors import ConfigError, require
from sparsetrain.launch import in_torchrun_worker
from sparsetrain.validation import SCHEMA_TYPES, check_job, closest, describe_type

__all__ = ["register_schemas", "check_command_line", "resumed_job", "JOB"]

JOB = "job.json"
"""The checked job as launched, saved in the run directory so that ``resume=`` can continue it."""


def register_schemas() -> None:
    """The job's schema as ``sparsetrain_schema``, and each built-in component's as
    ``schema/<group>/<name>`` (what ``conf/<group>/<name>.yaml`` extends)."""
    store = ConfigStore.instance()
    store.store(name="sparsetrain_schema", node=JobConfig)
    for group, entries in components.BUILTIN.items():
        for name, target in entries.items():
            schema = component_schema(target, components.component_class(target))
            store.store(group=f"schema/{group}", name=name, node=schema)


def _option_types() -> dict[str, Any]:
    """``group.key`` -> type of every built-in task's and compressor's options."""
    return {
        f"{group}.{key}": p.annotation
        for group, entries in components.BUILTIN.items()
        for target in entries.values()
        for key, p in components.options(components.component_class(target)).items()
    }


def _compose(overrides: list[str]) -> dict[str, Any]:
    with initialize_config_module(config_module="sparsetrain.conf", version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _unknown_key(key: str, overrides: list[str]) -> ConfigError:
    """The message for a key that composition does not know: a task's or compressor's key is
    checked against the class the rest of the command selects (as validation would)."""
    group, _, option = key.partition(".")
    if group in components.BUILTIN and option:
        try:
            job = _compose([o for o in overrides if _key(o) != key])
        except Exception:
            job = None
        if job is not None:
            job[group][option] = None
            try:
                check_job(job)
            except ConfigError as error:
                return error
    known = [k for k in SCHEMA_TYPES if k not in components.BUILTIN]
    return ConfigError(f"{key} is not a key of sparsetrain's config{closest(key, known)}")


def _one_line(error: Exception, overrides: list[str]) -> ConfigError:
    """A Hydra composition error as one line naming the key and the fix."""
    cause = error.__cause__
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, name = error.missing_cfg_file.rpartition("/")
        if "submitit" in name:
            return ConfigError(f"{group}={name} needs hydra-submitit-launcher: pip install -e \".[slurm]\"")
        extra = f", or {group}._target_=<your class>" if group in components.BUILTIN else ""
        return ConfigError(f"{group}={name} is not an option: use one of {', '.join(error.options or [])}{extra}")
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.full_key:
        return _unknown_key(cause.full_key, overrides)
    if isinstance(cause, ValidationError) and cause.full_key:
        given = next((o.split("=", 1)[1] for o in overrides if _key(o) == cause.full_key), "?")
        hint = SCHEMA_TYPES.get(cause.full_key, _option_types().get(cause.full_key))
        return ConfigError(f"{cause.full_key}={given} is not allowed: use {describe_type(hint)}")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if first.startswith("Could not append to config. An item is already at"):
        key = first.split("'")[1]
        return ConfigError(f"{key} is already in the config: set it without the + ({key}=...)")
    return ConfigError(first)


def resumed_job(run_dir: str) -> JobConfig:
    """The job a ``resume=<run dir>`` continues: the one saved at its launch, checked again."""
    from sparsetrain.checkpoint import latest

    saved = Path(run_dir) / JOB
    require(
        saved.exists() and latest(run_dir) is not None,
        f"resume={run_dir} holds no checkpoint (checkpoints/step_*/COMPLETE and {JOB}): "
        f"pass the directory of a run started with ckpt.every > 0",
    )
    job = json.loads(saved.read_text())
    for group in components.BUILTIN:  # runs saved before components owned their keys carried a label
        job[group].pop("name", None)
    job["resume"] = None
    return check_job(job)


def _check_point(overrides: list[str], multirun: bool) -> None:
    parsed = OverridesParser.create().parse_overrides(overrides)
    values = {o.key_or_group: o for o in parsed}
    resume = values.get("resume")
    if resume is not None and resume.value() is not None:
        others = [o.input_line for o in parsed if o.key_or_group != "resume" and not o.key_or_group.startswith("hydra")]
        require(
            not others,
            f"resume={resume.value()} continues the run with the config saved in its {JOB}; other overrides "
            f"({' '.join(others)}) would change it: drop them, or start a new run without resume=",
        )
        resumed_job(str(resume.value()))
        return
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        chosen = values.get(key)
        if chosen is not None:
            problem = rundir.creatable(str(chosen.value()))
            require(problem is None, f"{key}={chosen.value()} cannot be created ({problem}): choose a directory you can write")
    run_dir = values.get("hydra.run.dir")
    if run_dir is not None and not multirun and not in_torchrun_worker():
        require(
            not rundir.holds_run(str(run_dir.value())),
            f"hydra.run.dir={run_dir.value()} already holds a run: resume={run_dir.value()} continues it; "
            f"choose another directory for a new run",
        )
    try:
        job = _compose(overrides)
    except Exception as error:  # Hydra's and OmegaConf's composition errors
        raise _one_line(error, overrides) from None
    check_job(job, overrides)


def check_command_line(argv: list[str]) -> None:
    """Compose and check every job ``sparsetrain <argv>`` would run; raise a ConfigError for the
    first that cannot run. Help, shell completion and other config directories are left to Hydra."""
    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.config_dir or args.config_path:
        return
    if args.config_name not in (None, "config"):
        return
    if not args.multirun:
        _check_point(args.overrides, multirun=False)
        return
    try:
        parsed = OverridesParser.create().parse_overrides(args.overrides)
        points: list[Any] = BasicSweeper.split_arguments(parsed, None)[0]
    except Exception as error:
        raise _one_line(error, args.overrides) from None
    sweep_dir = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("hydra.sweep.dir=")), None)
    if sweep_dir is not None:
        require(
            not Path(sweep_dir).is_dir() or not any(Path(sweep_dir).iterdir()),
            f"hydra.sweep.dir={sweep_dir} is not empty: a sweep writes into a directory of its own; choose another",
        )
    for point in points:
        _check_point(point, multirun=True)
