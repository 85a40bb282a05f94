"""Run and sweep directories: a fresh one for every run and every sweep, never shared, never reused.

The default run directory is ``outputs/<date>/<time>`` and the default sweep directory
``multirun/<date>/<time>``. Each is created here, exclusively, when Hydra first resolves it: a run
(or a sweep, or another node of a multi-node job on the same host) started in the same second gets
``<time>-2``, then ``-3``, so no two of them ever write into one directory. Under torchrun, all
ranks of one job share ``outputs/torchrun-<run id>`` (torchrun's run id; an elastic restart
continues in it). A directory chosen with ``hydra.run.dir`` must not hold a run already
(:func:`holds_run`; the command checks it before anything is written): only ``resume=`` continues
a run in place.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from sparsetrain.launch import TorchrunEnv

__all__ = ["RUN_FILES", "holds_run", "fresh_dir", "creatable", "discard_if_empty", "register_resolvers"]

RUN_FILES = ("job.json", "metrics.jsonl", "summary.json", "checkpoints")
"""What a run leaves in its directory; any of them marks the directory as a run's."""

_FRESH: dict[str, str] = {}


def holds_run(path: str | Path) -> bool:
    return any((Path(path) / name).exists() for name in RUN_FILES)


def fresh_dir(kind: str, pattern: str) -> str:
    """A directory named by ``pattern`` (strftime of now) that this process has just created,
    suffixed ``-2``, ``-3``, ... when another process took the name first; the same one on every
    call of this process for ``kind``."""
    if kind not in _FRESH:
        base = datetime.now().strftime(pattern)
        Path(base).parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 10_000):
            candidate = base if attempt == 1 else f"{base}-{attempt}"
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            _FRESH[kind] = candidate
            break
    return _FRESH[kind]


def _run_dir(resume: str | None, mode: str) -> str:
    if resume:
        return str(Path(resume).resolve())
    run_id = TorchrunEnv.read().run_id
    if run_id is not None:
        return f"outputs/torchrun-{run_id}"
    if mode == "MULTIRUN":  # each job of a sweep runs in its subdirectory of the sweep directory
        return "outputs/unused-in-a-sweep"
    return fresh_dir("run", "outputs/%Y-%m-%d/%H-%M-%S")


def register_resolvers() -> None:
    """The resolvers ``conf/config.yaml`` names for ``hydra.run.dir``, ``hydra.sweep.dir`` and
    ``hydra.output_subdir`` (.hydra, or .hydra_resume when resuming)."""
    OmegaConf.register_new_resolver("sparsetrain_run_dir", _run_dir, use_cache=True, replace=True)
    OmegaConf.register_new_resolver(
        "sparsetrain_sweep_dir", lambda: fresh_dir("sweep", "multirun/%Y-%m-%d/%H-%M-%S"), use_cache=True, replace=True
    )
    OmegaConf.register_new_resolver(
        "sparsetrain_output_subdir", lambda resume: ".hydra_resume" if resume else ".hydra", replace=True
    )


def creatable(path: str | Path) -> str | None:
    """None if ``path`` is, or can be made, a directory this process can write into; else why
    not. A directory made to find out is removed again."""
    path = Path(path).absolute()
    if path.is_dir():
        return None if os.access(path, os.W_OK | os.X_OK) else "it is not writable"
    existing = next(p for p in path.parents if p.exists())
    try:
        path.mkdir(parents=True)
    except OSError as error:
        return error.strerror or str(error)
    for made in [path, *path.parents]:
        if made == existing:
            break
        made.rmdir()
    return None


def discard_if_empty(run_dir: str) -> None:
    """Remove a run directory that a refused job leaves holding only Hydra's files (.hydra/ and
    its log), and the parents it leaves empty below the working directory, so that nothing looks
    like a run that happened."""
    path = Path(run_dir).resolve()
    if not (path.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in path.iterdir())):
        return
    shutil.rmtree(path, ignore_errors=True)
    cwd = Path.cwd().resolve()
    for parent in path.parents:  # outputs/<date>/ left empty, up to the working directory
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()
