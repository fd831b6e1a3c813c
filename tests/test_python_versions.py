"""The package supports Python 3.10 to 3.12 (Colab runs 3.12). This machine runs the suite on one
version; here every other supported interpreter that is installed at least compiles every module,
which catches syntax that only newer Pythons accept."""

import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lora_course"


def _interpreter(version: str) -> str | None:
    # pyenv's real interpreters first: its shims are on PATH even for versions that are not active
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    if pyenv:
        return str(pyenv[-1])
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
        return found
    return None


@pytest.mark.parametrize("version", ["3.10", "3.12"])
def test_package_compiles_on(version, tmp_path):
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter on this machine")
    sources = [str(p) for p in PACKAGE.rglob("*.py")]
    # compile() only parses and compiles; nothing is imported and no .pyc lands in the tree
    code = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f, encoding='utf-8').read(), f, 'exec')\n"
    result = subprocess.run([python, "-c", code, *sources], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
