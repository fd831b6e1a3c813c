"""The exercises: solutions/ is built from autograder/sources, exercises/ is exactly what nbgrader generates from
solutions/ and holds no solution code and no hidden test, and every exercise has its catalogue of wrong and
alternative answers (graded through the real autograder in tests/test_grading.py)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "autograder"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))

import build  # noqa: E402
import lora_book  # noqa: E402

from lora_course.grading.course import assignments, student_versions  # noqa: E402
from lora_course.grading.repair import kind, nbmeta, text  # noqa: E402
from lora_course.grading.variants import solution_answers, variant_answers, variant_files  # noqa: E402

ASSIGNMENTS = assignments(ROOT)
SOLUTION_BLOCK = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)


def _nb(kind_: str, a: str) -> dict:
    return json.loads((ROOT / kind_ / a / f"{a}.ipynb").read_text())


def test_the_eight_assignments_exist():
    assert ASSIGNMENTS == [
        "01-memory-breakdown", "02-lora-layer", "03-inject-and-count", "04-gradient-accumulation",
        "05-gradient-checkpointing", "06-nf4-quantization", "07-merge-unmerge", "08-evaluation-metrics"]


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_solution_notebook_is_built_from_its_source(a):
    expected = build.expected_files([a])
    path = ROOT / "solutions" / a / f"{a}.ipynb"
    assert path.read_text() == expected[path], f"solutions/{a} differs from autograder/sources/{a}.py. Fix: python autograder/build.py"


@pytest.fixture(scope="module")
def generated():
    return student_versions(ASSIGNMENTS, ROOT)  # one nbgrader course for all eight: a few seconds


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_exercise_is_what_nbgrader_generates(a, generated):
    committed = (ROOT / "exercises" / a / f"{a}.ipynb").read_text()
    assert committed == generated[a], f"exercises/{a} is stale. Fix: python autograder/build.py"


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_exercise_has_no_solution_code_and_no_hidden_tests(a):
    sol, ex = _nb("solutions", a), _nb("exercises", a)
    ex_text = "\n".join(text(c) for c in ex["cells"])
    # where solution code or hidden tests would be left behind: answer and test cells (locked cells are public)
    student_text = "\n".join(text(c) for c in ex["cells"] if kind(c) in ("answer", "test", "written"))
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):
        assert marker not in ex_text
    secret_lines = set()
    for c in sol["cells"]:
        for block in SOLUTION_BLOCK.findall(text(c)) + HIDDEN_BLOCK.findall(text(c)):
            secret_lines |= {ln.strip() for ln in block.splitlines() if len(ln.strip()) > 25}
    # a line may legitimately appear in a visible part too (e.g. a test's setup repeated in its hidden part)
    visible = {ln.strip() for c in sol["cells"] for ln in HIDDEN_BLOCK.sub("", SOLUTION_BLOCK.sub("", text(c))).splitlines()}
    leaked = sorted(ln for ln in secret_lines - visible if ln in student_text)
    assert not leaked, f"exercises/{a} contains solution or hidden-test lines: {leaked[:3]}"
    answers = [c for c in ex["cells"] if kind(c) == "answer"]
    assert answers and all("raise NotImplementedError()" in text(c) for c in answers)
    hidden_tests = [c for c in sol["cells"] if kind(c) == "test" and "BEGIN HIDDEN TESTS" in text(c)]
    assert hidden_tests, f"{a} has no hidden tests"


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_exercise_metadata_setup_cell_and_points(a):
    ex = _nb("exercises", a)
    url, branch = lora_book.repository_from_book_config(ROOT / "_config.yml")
    assert lora_book.first_code_cell(ex) == lora_book.setup_cell_source(url, branch)
    ids = [nbmeta(c)["grade_id"] for c in ex["cells"] if nbmeta(c).get("grade_id")]
    assert len(ids) == len(set(ids))
    tests = [c for c in ex["cells"] if kind(c) == "test"]
    assert len(tests) >= 2 and all(nbmeta(c)["points"] > 0 and nbmeta(c)["locked"] for c in tests)
    assert any(kind(c) == "written" for c in ex["cells"]), "each exercise has a written question graded by hand"
    assert all(c.get("outputs", []) == [] for c in ex["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("a", ASSIGNMENTS)
def test_each_exercise_has_a_catalogue_of_wrong_and_alternative_answers(a):
    files = variant_files(a)
    wrong = [f for f in files if f.stem.startswith("wrong_")]
    alt = [f for f in files if f.stem.startswith("alt_")]
    assert len(wrong) >= 4 and len(alt) >= 1, f"{a}: {len(wrong)} wrong and {len(alt)} alternative answers"
    assert len(wrong) + len(alt) == len(files), "variant files are named wrong_*.py or alt_*.py"
    ids = set(solution_answers(a))
    for f in files:
        answers = variant_answers(f)
        assert answers and set(answers) <= ids, f"{f.name} replaces unknown answer cells {set(answers) - ids}"
        compile("\n".join(answers.values()), str(f), "exec")
