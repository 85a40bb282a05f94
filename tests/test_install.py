"""Both kinds of install find the configs shipped as ``sparsetrain.conf`` (and build the kernels).

The test session itself runs on the README's editable install; this test adds a regular
(non-editable) install of the repository into a directory of its own (``pip install --target``,
with pip's usual isolated build, as a user's ``pip install .`` does) and runs that copy's console
script from an unrelated directory (the known trap: ``config_path="../conf"`` works only from a
source tree). It runs the same inside or outside a virtual environment.
"""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_editable_install_reads_configs_from_the_source_tree():
    import sparsetrain.conf

    assert sparsetrain.conf.__file__.startswith(str(REPO / "conf"))
    assert sparsetrain.__file__.startswith(str(REPO / "sparsetrain"))


def test_regular_install_finds_its_configs(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(REPO)],
        check=True, capture_output=True, timeout=600,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)

    located = run(sys.executable, "-c", "import sparsetrain.conf, sparsetrain.compressors._kernels as k; "
                                        "print(sparsetrain.conf.__file__); print(k.__file__)")
    assert located.returncode == 0, located.stderr
    conf_file, kernels_file = located.stdout.split()
    assert conf_file == str(target / "sparsetrain" / "conf" / "__init__.py")  # the installed copy, not the tree
    assert kernels_file.startswith(str(target / "sparsetrain" / "compressors" / "_kernels"))  # the C kernels built
    result = run(str(target / "bin" / "sparsetrain"), "compressor=regtopk", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "_target_: sparsetrain.compressors.regtopk.RegTopK" in result.stdout and "mu: 4.0" in result.stdout
