"""The course folder the grader reads, a clean nbgrader course directory built from its ``solutions/``, and the
student versions (``exercises/``) that nbgrader generates from it.

A *course folder* is a checkout of the course repository, or a folder written by ``export_course``
(``lora-course course export DIR``): ``solutions/<assignment>/<assignment>.ipynb`` (the exercises with their
reference solutions and hidden tests), ``exercises/`` (the released student notebooks) and ``autograder/``. The
installed package (a wheel) holds none of it: anything in the package is public (students install it too) and
readable by the code being graded, whose kernel imports the package (see autograder/README.md).

The nbgrader course directory lives in a fresh temporary folder: grading never writes into the course folder,
and two gradings never share a gradebook.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from traitlets.config import Config

from lora_course.errors import GradingSetupError, OutputExistsError

COURSE_ENV = "LORA_COURSE_REPO"
EXPORT_HINT = ("a checkout of the course repository, or a course folder that `lora-course course export DIR` "
               "writes from one (keep it private: it holds the hidden tests)")


def package_parent() -> Path:
    """The folder the running ``lora_course`` package was imported from (a checkout, or site-packages)."""
    return Path(__file__).resolve().parents[2]


def _checkout_root() -> Path | None:
    """The course repository this package was imported from (an editable install or a checkout on
    PYTHONPATH), or None for an installed wheel, which holds no course material."""
    root = package_parent()
    return root if is_course_folder(root) else None


def assignments(root: Path | None = None) -> list[str]:
    sol = (root or repo_root()) / "solutions"
    return sorted(p.name for p in sol.iterdir() if (p / f"{p.name}.ipynb").is_file()) if sol.is_dir() else []


def is_course_folder(path: Path) -> bool:
    """A folder with at least one ``solutions/<assignment>/<assignment>.ipynb``."""
    return Path(path).is_dir() and bool(assignments(Path(path)))


def _not_a_course(what: str, path: Path) -> GradingSetupError:
    why = "does not exist" if not path.exists() else "has no solutions/<assignment>/<assignment>.ipynb"
    return GradingSetupError(f"{what}{path} is not a course folder: it {why}. Fix: point it at {EXPORT_HINT}")


def course_root(course: str | Path | None = None) -> Path:
    """The course folder to grade from, looked for in this order: ``course`` (``--course DIR``); else
    LORA_COURSE_REPO; else the current folder when it is a course folder; else the checkout this package was
    imported from. An explicit folder that is not a course folder is an error, not skipped."""
    if course is not None:
        path = Path(course).expanduser().resolve()
        if not is_course_folder(path):
            raise _not_a_course("--course ", path)
        return path
    env = os.environ.get(COURSE_ENV)
    if env:
        path = Path(env).expanduser().resolve()
        if not is_course_folder(path):
            raise _not_a_course(f"{COURSE_ENV}=", path)
        return path
    cwd = Path.cwd().resolve()
    if is_course_folder(cwd):
        return cwd
    checkout = _checkout_root()
    if checkout is not None:
        return checkout
    raise GradingSetupError(
        "no course folder found (the exercises with their hidden tests: solutions/<assignment>/<assignment>.ipynb; "
        "the installed package does not contain them). Looked at: --course (not given), "
        f"{COURSE_ENV} (not set), the current folder {cwd} (no solutions/ with exercises), the folder the package "
        f"was imported from {package_parent()} (not a checkout of the course repository). Fix: pass --course DIR, "
        f"DIR being {EXPORT_HINT}; or run the command inside a course folder")


def repo_root() -> Path:
    """The course folder when none is named: LORA_COURSE_REPO, the current folder, the checkout (course_root)."""
    return course_root()


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


def make_course(course_root: Path, assignment: str | list[str], root: Path | None = None,
                replace_tests: dict[str, str] | None = None, **config) -> Config:
    """course_root/source/<assignment>/ from solutions/, released by nbgrader, with a gradebook holding the source
    cells (hidden tests included). Several assignments may share one course (generating exercises does).
    ``replace_tests``: grade id -> the source its test cell gets instead (the grader's probe cells, checks.py), so
    those hidden tests are not even in the gradebook the kernel's notebook is built from."""
    from nbgrader.apps import NbGraderAPI

    names = [assignment] if isinstance(assignment, str) else list(assignment)
    _tools_on_path()
    course_root.mkdir(parents=True, exist_ok=True)
    for a in names:
        src = (root or repo_root()) / "solutions" / a
        if not (src / f"{a}.ipynb").is_file():
            raise FileNotFoundError(f"no source notebook solutions/{a}/{a}.ipynb")
        shutil.copytree(src, course_root / "source" / a, ignore=shutil.ignore_patterns("variants", "__pycache__"))
        if replace_tests:
            _replace_test_cells(course_root / "source" / a / f"{a}.ipynb", replace_tests)
    cfg = nbgrader_config(course_root, **config)
    with _quiet():
        api = NbGraderAPI(config=cfg)
        api.log.setLevel(logging.ERROR)
        for a in names:
            result = api.generate_assignment(a, force=True, create=True)
            if not result["success"]:
                raise RuntimeError(f"nbgrader generate_assignment failed for {a}:\n{result['log']}\n{result.get('error')}")
    return cfg


def _replace_test_cells(path: Path, sources: dict[str, str]) -> None:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in sources and cell["cell_type"] == "code":
            cell["source"] = sources[grade_id]
            cell["outputs"] = []
    path.write_text(json.dumps(nb, indent=1))


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


README_TXT = """\
A lora-course course folder: PRIVATE, it contains the hidden tests.
=====================================================================

Written by `lora-course course export` (lora-course {version}) on {date}
from {src}.
Assignments: {names}.

What is in it
  solutions/<assignment>/<assignment>.ipynb   the exercises with reference solutions and HIDDEN TESTS
                                              (nbgrader source notebooks): what the grader grades with
  exercises/<assignment>/<assignment>.ipynb   the released student notebooks (no solutions, no hidden
                                              tests): what students start from
  autograder/nbgrader_config.py               for plain nbgrader commands, run in autograder/ (optional)
  autograder/checks/<assignment>/             the hidden checks the grader runs OUTSIDE the student's
                                              kernel: probes.py (runs in the kernel, calls the answers on
                                              inputs drawn at grading time, returns data) and checks.py
                                              (the inputs and the verdicts, run only by the grader)
  autograder/variants/<assignment>/           wrong_*.py / alt_*.py: plausible wrong answers (must lose
                                              points) and other correct ones (must get full marks)

Keep it private: do not publish it, put it in a public repository or share it with students. Anyone
who can read solutions/ can read the hidden tests and the reference solutions. (This is why the
hidden tests are not in the pip package: students can install that package too.)

Grading from it
  lora-course grade ASSIGNMENT SUBMISSIONS --course {dest} --out grades/
or, with this folder as the current folder, without --course:
  lora-course grade 02-lora-layer submissions/ --out grades/
SUBMISSIONS is a folder (one sub-folder or file per student) or a .zip. The output: grades/grades.csv,
grades/feedback/<student>.html (no hidden test source in it), grades/summary.md and summary.json.
The grader never writes into this folder or into the submissions. Setting LORA_COURSE_REPO={dest}
works too.

Adding your own hidden tests
  Edit solutions/<assignment>/<assignment>.ipynb (Jupyter, or any JSON editor):
  * more checks in an existing test cell: put them between the lines
        ### BEGIN HIDDEN TESTS
        ### END HIDDEN TESTS
    of that cell; its points stay the same.
  * a new test with its own points: add a code cell after the other test cells, with the checks
    between those two lines and this cell metadata (grade_id: a new, unique name):
        "nbgrader": {{"grade": true, "grade_id": "test_my_check", "locked": true, "points": 2,
                     "schema_version": 3, "solution": false, "task": false}}
  Such a cell runs inside the student's kernel (under the guard, which code in that process could
  defeat). To check it from outside, add a function of the same name to both files of
  autograder/checks/<assignment>/ (see the ones there): the probe returns the answers' results as data,
  the verdict compares them with the reference solution's and raises AssertionError with the message.
  Students' notebooks need not change: the grader takes every test cell from solutions/, so
  submissions made from the released exercises get the new checks too. Then check them: grade the
  reference solution (solutions/<assignment>/<assignment>.ipynb, as a submission: full marks expected)
  and a wrong answer or two; with this folder as the current folder,
      python -m lora_course.grading.catalog ASSIGNMENT
  grades the reference and every autograder/variants answer and says which got what they should.
  If you change what students see (the text, an answer cell, a visible test), hand out a new student
  notebook: the grader builds the student version from solutions/ either way, and
      cd autograder && nbgrader generate_assignment ASSIGNMENT --force
  rewrites exercises/ASSIGNMENT/ from it (nbgrader leaves a gradebook.db here too; it is private as well).
"""


def export_course(src_root: str | Path | None, dest: str | Path) -> list[str]:
    """Write a self-contained course folder at ``dest`` from the course folder ``src_root`` (None: the one
    ``course_root`` finds): solutions/ (hidden tests included), exercises/ (the released student notebooks,
    generated by nbgrader where the source has none), autograder/nbgrader_config.py, autograder/variants/,
    autograder/checks/ and README.txt. ``dest`` must be new or empty; it is made readable by its owner only. Returns the assignments."""
    from lora_course import __version__

    src = course_root(src_root)
    dest = Path(dest).expanduser().resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise OutputExistsError(f"{dest} is not an empty folder; the export writes solutions/, exercises/, "
                                "autograder/ and README.txt there. Fix: name a new or empty folder")
    for part in ("solutions", "exercises", "autograder"):
        if dest == src / part or src / part in dest.parents:
            raise GradingSetupError(f"{dest} is inside the course's own {part}/ folder. Fix: export somewhere else")
    names = assignments(src)
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    skip = shutil.ignore_patterns("variants", "__pycache__", ".ipynb_checkpoints")
    missing = []
    for a in names:
        shutil.copytree(src / "solutions" / a, dest / "solutions" / a, ignore=skip)
        if (src / "exercises" / a / f"{a}.ipynb").is_file():
            shutil.copytree(src / "exercises" / a, dest / "exercises" / a, ignore=skip)
        else:
            missing.append(a)
    for a, text in (student_versions(missing, dest) if missing else {}).items():
        (dest / "exercises" / a).mkdir(parents=True, exist_ok=True)
        (dest / "exercises" / a / f"{a}.ipynb").write_text(text)
    (dest / "autograder").mkdir()
    if (src / "autograder" / "nbgrader_config.py").is_file():
        shutil.copy(src / "autograder" / "nbgrader_config.py", dest / "autograder" / "nbgrader_config.py")
    for a in names:
        for part in ("variants", "checks"):
            if (src / "autograder" / part / a).is_dir():
                shutil.copytree(src / "autograder" / part / a, dest / "autograder" / part / a,
                                ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "README.txt").write_text(README_TXT.format(
        version=__version__, date=datetime.date.today().isoformat(), src=src, names=", ".join(names), dest=dest))
    return names
