"""Grading outside a checkout (issue 16): the installed package holds no hidden tests, so the grader finds a course
folder (--course, LORA_COURSE_REPO, the current folder, the checkout) or says how to get one;
``lora-course course export DIR`` writes one; an instructor's own hidden tests in it count."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lora_course
from lora_course.cli import main as cli_main
from lora_course.errors import GradingSetupError, OutputExistsError
from lora_course.grading import course
from lora_course.grading.course import assignments, course_root, export_course
from lora_course.grading.feedback import hidden_test_lines
from lora_course.grading.pipeline import _private_folders, grade
from lora_course.grading.synthetic import CLASS_LIMITS
from lora_course.grading.variants import dumps, fill, solution_answers

ROOT = Path(__file__).resolve().parents[1]
A = "02-lora-layer"
# the tests must exercise this tree's code: the grader's worker and kernels import the package from where it was
assert Path(lora_course.__file__).resolve().parents[1] == ROOT, f"lora_course imported from {lora_course.__file__}"

# A plausible wrong answer that the course's own tests miss: A drawn with std 1 instead of nn.Linear's scale
WRONG_INIT = solution_answers(A, ROOT)["lora_layer"].replace("nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))",
                                                             "nn.init.normal_(self.A)")
assert WRONG_INIT != solution_answers(A, ROOT)["lora_layer"]
EXTRA_ID, EXTRA_POINTS = "test_instructor_init_scale", 3
EXTRA_TEST = """# the instructor's own check: A starts on the scale of nn.Linear's weights
layer = LoRALayer(nn.Linear(64, 8), r=4, alpha=8)
### BEGIN HIDDEN TESTS
assert layer.A.std() < 0.5, f"A starts far too large (std {layer.A.std():.2f}); initialise it like nn.Linear"
### END HIDDEN TESTS
"""


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """As on a machine with the package installed from a wheel: no LORA_COURSE_REPO, the current folder an empty
    one, and no checkout beside the package."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(course.COURSE_ENV, raising=False)
    monkeypatch.setattr(course, "_checkout_root", lambda: None)
    return cwd


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    dest = tmp_path_factory.mktemp("private") / "course"
    assert export_course(ROOT, dest) == assignments(ROOT)
    return dest


@pytest.fixture(scope="module")
def klass(tmp_path_factory, exported):
    """The reference solution notebook itself, as instructors are told to check with, and the wrong answer."""
    folder = tmp_path_factory.mktemp("class")
    (folder / "reference").mkdir()
    shutil.copy(exported / "solutions" / A / f"{A}.ipynb", folder / "reference")
    (folder / "std_normal_a").mkdir()
    (folder / "std_normal_a" / f"{A}.ipynb").write_bytes(dumps(fill(A, {"lora_layer": WRONG_INIT}, exported)))
    return folder


def _limits() -> list[str]:
    return ["--cell-timeout", str(CLASS_LIMITS.cell_timeout), "--notebook-timeout", str(CLASS_LIMITS.notebook_timeout)]


# --- finding the course folder ---------------------------------------------------------------------------------

def test_outside_a_checkout_the_error_says_where_it_looked_and_the_fix(outside, tmp_path, capsys):
    with pytest.raises(GradingSetupError) as err:
        course_root()
    msg = str(err.value)
    assert "no course folder found" in msg and str(outside) in msg and "LORA_COURSE_REPO" in msg
    assert "Fix: pass --course DIR" in msg and "lora-course course export DIR" in msg
    assert cli_main(["grade", A, str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lora-course grade: error: no course folder found")
    assert "use one of" not in lines[0]


def test_an_installed_package_without_a_checkout_names_the_fix(tmp_path):
    """The package alone (what the wheel holds: lora_course/ and nothing beside it), run in a subprocess."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "lora_course", site / "lora_course", ignore=shutil.ignore_patterns("__pycache__"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != course.COURSE_ENV}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-m", "lora_course", "grade", A, "submissions", "--out", "grades"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no course folder found" in lines[0] and f"imported from {site}" in lines[0]  # the copy ran
    assert "--course DIR" in lines[0] and "lora-course course export DIR" in lines[0]


def test_the_course_folder_is_looked_for_in_order(outside, exported, tmp_path, monkeypatch):
    other = tmp_path / "other"
    (other / "solutions" / "x-one").mkdir(parents=True)
    (other / "solutions" / "x-one" / "x-one.ipynb").write_text("{}")
    monkeypatch.setattr(course, "_checkout_root", lambda: other)
    assert course_root() == other  # the checkout, last
    monkeypatch.chdir(exported)
    assert course_root() == exported  # the current folder before the checkout
    monkeypatch.setenv(course.COURSE_ENV, str(other))
    assert course_root() == other  # LORA_COURSE_REPO before the current folder
    assert course_root(exported) == exported  # --course before everything
    monkeypatch.setenv(course.COURSE_ENV, str(tmp_path / "missing"))
    with pytest.raises(GradingSetupError, match=r"LORA_COURSE_REPO=.*missing is not a course folder: it does not "):
        course_root()
    with pytest.raises(GradingSetupError, match=r"--course .* is not a course folder: it has no solutions/.*Fix:"):
        course_root(tmp_path)


def test_unknown_assignment_lists_the_found_folders_assignments(outside, tmp_path):
    other = tmp_path / "other"
    (other / "solutions" / "x-one").mkdir(parents=True)
    (other / "solutions" / "x-one" / "x-one.ipynb").write_text("{}")
    with pytest.raises(GradingSetupError) as err:
        grade(A, tmp_path, tmp_path / "out", course=other)
    assert f"unknown assignment '{A}' in the course folder {other}" in str(err.value)
    assert str(err.value).endswith("Fix: use one of x-one")


def test_the_kernel_is_denied_all_of_an_exported_course_and_a_checkouts_private_folders(exported):
    assert _private_folders(exported) == [str(exported)]
    assert set(_private_folders(ROOT)) == {str(ROOT / p) for p in ("solutions", "autograder", ".git", "tests")}


# --- exporting -------------------------------------------------------------------------------------------------

def test_export_writes_a_private_self_contained_course(exported):
    assert oct(exported.stat().st_mode & 0o777) == "0o700"
    assert assignments(exported) == assignments(ROOT)
    for a in assignments(ROOT):
        for part in ("solutions", "exercises"):
            assert (exported / part / a / f"{a}.ipynb").read_bytes() == (ROOT / part / a / f"{a}.ipynb").read_bytes()
        assert sorted(p.name for p in (exported / "autograder" / "variants" / a).glob("*.py")) == \
            sorted(p.name for p in (ROOT / "autograder" / "variants" / a).glob("*.py"))
    assert (exported / "autograder" / "nbgrader_config.py").is_file()
    assert not (exported / "autograder" / "sources").exists() and not (exported / "lora_course").exists()
    readme = (exported / "README.txt").read_text()
    for words in ("PRIVATE", "hidden tests", f"--course {exported} --out grades/", "### BEGIN HIDDEN TESTS",
                  '"grade": true', "python -m lora_course.grading.catalog"):
        assert words in readme, words
    assert sorted(p.name for p in exported.iterdir()) == ["README.txt", "autograder", "exercises", "solutions"]


def test_export_refuses_a_folder_that_is_not_empty(exported, tmp_path, capsys):
    with pytest.raises(OutputExistsError, match="not an empty folder.*Fix: name a new or empty folder"):
        export_course(ROOT, exported)
    assert cli_main(["course", "export", str(exported), "--course", str(ROOT)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    with pytest.raises(GradingSetupError, match="inside the course's own solutions/"):
        export_course(exported, exported / "solutions" / "copy")
    assert cli_main(["course", "export", str(tmp_path / "fresh"), "--course", str(exported)]) == 0
    assert "keep it private" in capsys.readouterr().out
    assert (tmp_path / "fresh" / "solutions" / A / f"{A}.ipynb").is_file()


# --- grading from an exported course ---------------------------------------------------------------------------

def test_grading_from_an_exported_course_outside_the_repository(outside, exported, klass, tmp_path):
    out = tmp_path / "grades"
    assert cli_main(["grade", A, str(klass), "--course", str(exported), "--out", str(out), *_limits()]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["course"] == str(exported)
    assert summary["max_score"] == 8 and summary["scores"] == {"reference": 8, "std_normal_a": 8}, summary
    # (the course's own tests do not catch a std-1 initialisation of A: the next test adds one that does)


def test_an_instructors_own_hidden_test_counts(outside, exported, klass, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(exported, mine)
    path = mine / "solutions" / A / f"{A}.ipynb"
    nb = json.loads(path.read_text())
    at = next(i for i, c in enumerate(nb["cells"])
              if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_forward_matches_reference")
    nb["cells"].insert(at + 1, {
        "cell_type": "code", "execution_count": None, "id": "test-instructor-init-scale", "outputs": [],
        "metadata": {"deletable": False, "editable": False, "nbgrader": {
            "grade": True, "grade_id": EXTRA_ID, "locked": True, "points": EXTRA_POINTS, "schema_version": 3,
            "solution": False, "task": False}},
        "source": EXTRA_TEST})
    path.write_text(json.dumps(nb, indent=1))
    out = tmp_path / "grades"
    summary = grade(A, klass, out, jobs=2, limits=CLASS_LIMITS, progress=lambda m: None, course=mine)
    assert summary["course"] == str(mine)
    assert summary["max_score"] == 8 + EXTRA_POINTS
    assert summary["scores"] == {"reference": 8 + EXTRA_POINTS, "std_normal_a": 8}, summary
    assert list(summary["failed_checks"]["std_normal_a"]) == [EXTRA_ID]
    # made from the released notebook, which lacks the new cell: the grader restores it from the source and says so
    assert f"test cell '{EXTRA_ID}' was deleted: restored from the source" in summary["repaired"]["std_normal_a"]
    assert "A starts far too large" in summary["failed_checks"]["std_normal_a"][EXTRA_ID]
    feedback = (out / "feedback" / "std_normal_a.html").read_text()
    assert EXTRA_ID in feedback
    hidden = hidden_test_lines(path)
    assert any("layer.A.std() < 0.5" in line for line in hidden)
    assert not [line for line in hidden if line in feedback], "the feedback shows hidden test source"
    header = (out / "grades.csv").read_text().splitlines()[0]
    assert EXTRA_ID in header.split(",")


def test_grading_in_an_exported_course_folder_needs_no_course_option(outside, exported, tmp_path, monkeypatch):
    sub = tmp_path / "submissions" / "reference"
    sub.mkdir(parents=True)
    shutil.copy(exported / "solutions" / A / f"{A}.ipynb", sub)
    monkeypatch.chdir(exported)
    out = tmp_path / "grades"
    assert cli_main(["grade", A, str(sub.parent), "--out", str(out), *_limits()]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["course"] == str(exported) and summary["scores"] == {"reference": 8}
    assert sorted(p.name for p in exported.iterdir()) == ["README.txt", "autograder", "exercises", "solutions"]
