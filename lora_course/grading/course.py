"""A clean nbgrader course directory built from the repository's ``solutions/``, and the student
versions (``exercises/``) that nbgrader generates from it.

The course directory lives in a fresh temporary folder: grading never writes into the repository,
and two gradings never share a gradebook.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from traitlets.config import Config


def repo_root() -> Path:
    """The course repository: LORA_COURSE_REPO, else the checkout this package was imported from."""
    env = os.environ.get("LORA_COURSE_REPO")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def assignments(root: Path | None = None) -> list[str]:
    sol = (root or repo_root()) / "solutions"
    return sorted(p.name for p in sol.iterdir() if (p / f"{p.name}.ipynb").is_file()) if sol.is_dir() else []


def nbgrader_config(course_root: Path, *, cell_timeout: int = 60, kernel_name: str | None = None) -> Config:
    c = Config()
    c.CourseDirectory.root = str(course_root)
    c.CourseDirectory.course_id = "lora-course"
    c.CourseDirectory.db_url = f"sqlite:///{course_root / 'gradebook.db'}"
    c.Execute.timeout = cell_timeout
    c.Execute.interrupt_on_timeout = True
    c.Autograde.create_student = True
    # students must not be told they "should" have run the notebook (Colab submissions never were)
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "variants"]
    if kernel_name:
        c.Execute.kernel_name = kernel_name
    return c


@contextlib.contextmanager
def _quiet():
    # nbgrader logs every file it copies; the autograder reports what matters itself
    logger = logging.getLogger("traitlets")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _tools_on_path() -> None:
    # nbgrader runs its own ``alembic`` executable; it sits beside this interpreter even when the venv is not activated
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def make_course(course_root: Path, assignment: str | list[str], root: Path | None = None, **config) -> Config:
    """course_root/source/<assignment>/ from solutions/, released by nbgrader, with a gradebook holding the source
    cells (hidden tests included). Several assignments may share one course (generating exercises does)."""
    from nbgrader.apps import NbGraderAPI

    names = [assignment] if isinstance(assignment, str) else list(assignment)
    _tools_on_path()
    course_root.mkdir(parents=True, exist_ok=True)
    for a in names:
        src = (root or repo_root()) / "solutions" / a
        if not (src / f"{a}.ipynb").is_file():
            raise FileNotFoundError(f"no source notebook solutions/{a}/{a}.ipynb")
        shutil.copytree(src, course_root / "source" / a, ignore=shutil.ignore_patterns("variants", "__pycache__"))
    cfg = nbgrader_config(course_root, **config)
    with _quiet():
        api = NbGraderAPI(config=cfg)
        api.log.setLevel(logging.ERROR)
        for a in names:
            result = api.generate_assignment(a, force=True, create=True)
            if not result["success"]:
                raise RuntimeError(f"nbgrader generate_assignment failed for {a}:\n{result['log']}\n{result.get('error')}")
    return cfg


def student_versions(names: list[str], root: Path | None = None) -> dict[str, str]:
    """assignment -> the text of exercises/<a>/<a>.ipynb as nbgrader generates it from solutions/ (stable bytes)."""
    import nbformat

    out = {}
    with tempfile.TemporaryDirectory(prefix="lora-course-gen-") as tmp:
        make_course(Path(tmp), names, root)
        for a in names:
            nb = json.loads((Path(tmp) / "release" / a / f"{a}.ipynb").read_text())
            nbformat.validate(nbformat.from_dict(nb))
            out[a] = json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    return out


def student_version(assignment: str, root: Path | None = None) -> str:
    return student_versions([assignment], root)[assignment]
