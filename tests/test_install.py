"""Both kinds of install find the configs shipped as ``sparsetrain.conf`` (and build the kernels).

The test session itself runs on the README's editable install; this test adds a regular
(non-editable) ``pip install .`` into a fresh virtual environment and runs its console script from
an unrelated directory (the known trap: ``config_path="../conf"`` works only from a source tree).
"""

import subprocess
import sys
import venv

from tests.conftest import REPO


def test_editable_install_reads_configs_from_the_source_tree():
    import sparsetrain.conf

    assert sparsetrain.conf.__file__.startswith(str(REPO / "conf"))
    assert sparsetrain.__file__.startswith(str(REPO / "sparsetrain"))


def test_regular_install_finds_its_configs(tmp_path):
    env_dir = tmp_path / "venv"
    # Without its own pip, the venv uses the installed pip and setuptools (no download needed).
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, str(REPO)], check=True, capture_output=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [str(env_dir / "bin" / "sparsetrain"), "compressor=dense", "--cfg", "job"],
        capture_output=True, text=True, cwd=elsewhere, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "sparsetrain.compressors.dense.Dense" in result.stdout
    located = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import sparsetrain.conf; print(sparsetrain.conf.__file__)"],
        capture_output=True, text=True, cwd=elsewhere, check=True,
    )
    assert located.stdout.startswith(str(env_dir)), located.stdout
    kernels = subprocess.run(  # the optional C extension is built and shipped (a compiler is here)
        [str(env_dir / "bin" / "python"), "-c", "from sparsetrain.compressors import _kernels; print(_kernels.__file__)"],
        capture_output=True, text=True, cwd=elsewhere, check=True,
    )
    assert kernels.stdout.startswith(str(env_dir)), kernels.stdout
    assert sys.prefix != str(env_dir)
