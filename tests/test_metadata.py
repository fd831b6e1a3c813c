"""Package metadata, each fact written once: the version in lora_course/__init__.py (pyproject.toml reads it
from there), the repository in pyproject.toml's [project.urls] Source. Every other place that names the
repository (the other URLs, _config.yml, the README's install line, the workflows, anything tracked) names
that one, so moving the repository is one edit and this test lists whatever still names the old address."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

import lora_course

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
URLS = PROJECT["urls"]
SOURCE = URLS["Source"]
OWNER, NAME = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", SOURCE).groups()
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_version_is_written_once():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert setuptools["dynamic"]["version"] == {"attr": "lora_course.__version__"}
    assert str(Version(lora_course.__version__)) == lora_course.__version__, "not a normalized PEP 440 version"


def test_installed_distribution_has_the_package_version():
    try:
        installed = importlib.metadata.version(PROJECT["name"])
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{PROJECT['name']} is not installed in this environment. Fix: make setup (pip install -e .)")
    assert installed == lora_course.__version__, (
        f"installed {PROJECT['name']} {installed}, but lora_course.__version__ is {lora_course.__version__}. "
        "Fix: reinstall (make setup, or pip install -e .), which records the version again")


def test_urls_are_derived_from_the_source():
    assert SOURCE == f"https://github.com/{OWNER}/{NAME}"
    assert URLS["Homepage"] == SOURCE
    assert URLS["Issues"] == f"{SOURCE}/issues"
    # GitHub Pages of a project repository, where .github/workflows/book.yml deploys the book
    assert URLS["Documentation"] == f"https://{OWNER.lower()}.github.io/{NAME}/"
    assert set(URLS) == {"Homepage", "Documentation", "Source", "Issues"}


def test_book_config_names_the_same_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"].rstrip("/") == SOURCE


def test_readme_installs_from_the_same_repository():
    text = (ROOT / "README.md").read_text()
    installs = re.findall(r"git\+(https://[^\s\"'@]+)", text)
    assert installs, "the README has no install line from the repository"
    assert set(installs) == {SOURCE}, installs


def test_workflows_name_the_same_repository():
    assert WORKFLOWS
    named = {w.name: re.findall(r"github\.repository\s*==\s*'([^']*)'", w.read_text()) for w in WORKFLOWS}
    assert named["release.yml"] and named["book.yml"], "publishing is not limited to the course's repository"
    wrong = {w: n for w, n in named.items() if set(n) - {f"{OWNER}/{NAME}"}}
    assert not wrong, f"workflows naming another repository than {OWNER}/{NAME}: {wrong}"
    assert f"https://pypi.org/project/{PROJECT['name']}/" in (ROOT / ".github/workflows/release.yml").read_text()


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    files = [ROOT / name for name in listed.stdout.split("\0") if name]
    return [f for f in files if f.is_file() and f.stat().st_size < 1_000_000]


def test_nothing_else_names_another_address_of_the_repository():
    """Any GitHub or GitHub Pages address whose owner or name is the project's must be the Source's."""
    ours = {OWNER.lower(), NAME.lower(), PROJECT["name"].lower(), PROJECT["name"].replace("-", "_").lower()}
    address = re.compile(r"github\.com/([\w.-]+)/([\w-]+(?:\.[\w-]+)*)|([\w-]+)\.github\.io/([\w-]+(?:\.[\w-]+)*)")
    stale = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for m in address.finditer(text):
            owner, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            name = name.removesuffix(".git")
            if {owner.lower(), name.lower()} & ours and (owner.lower(), name) != (OWNER.lower(), NAME):
                stale.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not stale, f"addresses that are not {SOURCE} (pyproject.toml [project.urls] Source): {stale}"
