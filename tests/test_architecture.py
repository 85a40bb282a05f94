"""The package's shape: layers imported only downwards, no import cycles, modules of a readable size.

Imports are read from the source (every ``import`` / ``from ... import`` naming a sparsetrain
module, at any depth of the file). ``from package import submodule`` counts as an import of the
submodule: importing any submodule runs its package's ``__init__`` too, which is not a dependency
of the importing module's design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "sparsetrain"

LAYERS = [
    ("sparsetrain.cli", "sparsetrain.report", "sparsetrain.__main__"),
    ("sparsetrain.compose",),
    ("sparsetrain.validation", "sparsetrain.rundir"),
    ("sparsetrain.worker",),
    ("sparsetrain.launch",),
    ("sparsetrain.train",),
    ("sparsetrain.summary",),
    ("sparsetrain.ddp",),
    ("sparsetrain.tasks", "sparsetrain.compressors", "sparsetrain.exchange", "sparsetrain.optim",
     "sparsetrain.schedule", "sparsetrain.checkpoint", "sparsetrain.metrics", "sparsetrain.progress",
     "sparsetrain.collectives", "sparsetrain.net"),
    ("sparsetrain.config",),
    ("sparsetrain.components", "sparsetrain.errors", "sparsetrain.failures", "sparsetrain.layout",
     "sparsetrain.seeding", "sparsetrain.timing", "sparsetrain"),
]
"""Highest first; a module may import from its own layer or below. A prefix covers a package."""


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
EXTENSIONS = {module_name(p) for p in PACKAGE.rglob("*.c")}
"""Compiled modules (``_kernels.c``): leaves of the graph."""


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sparsetrain")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sparsetrain"):
            submodules = {f"{node.module}.{a.name}" for a in node.names} & (MODULES.keys() | EXTENSIONS)
            found |= submodules or {node.module}
    return found - {module_name(path)}


def layer(module: str) -> int:
    matches = [(len(prefix), i) for i, names in enumerate(LAYERS) for prefix in names
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} has no layer in tests/test_architecture.py"
    return max(matches)[1]


def test_every_import_goes_down_or_sideways():
    upward = [
        f"{module} imports {target}"
        for module, path in MODULES.items()
        for target in imports(path)
        if target in MODULES and layer(target) < layer(module)
    ]
    assert not upward


def test_no_import_cycles():
    graph = {module: imports(path) & MODULES.keys() for module, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            assert state.get(target) != 1, " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_readable(module):
    limit = 200 if module == "sparsetrain.train.loop" else 300
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= limit, f"{module} has {lines} lines (at most {limit})"
