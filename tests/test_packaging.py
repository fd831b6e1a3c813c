"""What `pip install lora-course` gets: the wheel holds the code, the shipped assets and the command."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(ROOT / "lora_course", source / "lora_course", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # --no-build-isolation: build with this environment's setuptools, no download of build requirements
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)]
    subprocess.run(cmd, check=True, capture_output=True)
    return zipfile.ZipFile(next(out.glob("lora_course-*.whl")))


def test_wheel_ships_every_module_and_asset(wheel):
    names = set(wheel.namelist())
    for path in (ROOT / "lora_course").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            assert path.relative_to(ROOT).as_posix() in names, f"{path} is missing from the wheel"
    assert not any(n.startswith(("tests/", "book/", "solutions/")) for n in names)


def test_wheel_declares_the_command_and_extras(wheel):
    dist_info = next(n.split("/")[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert "lora-course = lora_course.cli:main" in entry_points
    metadata = wheel.read(f"{dist_info}/METADATA").decode()
    for extra in ("book", "grader", "dev"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "Requires-Python: <3.13,>=3.10" in metadata
