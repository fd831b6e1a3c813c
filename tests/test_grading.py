"""The autograder, end to end through nbgrader: repairs of messy submissions, the sandbox, feedback that does not
leak hidden tests, a small class in the default run, and (slow) a synthetic class of 40 submissions plus the
full catalogue of wrong and alternative answers of every exercise, each with exactly the expected grades."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lora_course.cli import main as cli_main
from lora_course.grading import repair
from lora_course.grading.course import assignments
from lora_course.grading.feedback import hidden_test_lines
from lora_course.grading.pipeline import Limits, _pick_notebook, grade
from lora_course.grading.submissions import read_submissions
from lora_course.grading.synthetic import A, CLASS_LIMITS, SLOW_CELL_S, synthetic_class

ROOT = Path(__file__).resolve().parents[1]
LIMITS = CLASS_LIMITS
assert SLOW_CELL_S < LIMITS.cell_timeout and 8 * SLOW_CELL_S > LIMITS.notebook_timeout, "too_slow_overall must hit only the notebook limit"


def _tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        h.update(str(f.relative_to(path)).encode())
        if f.is_file():
            h.update(f.read_bytes())
            h.update(str(f.stat().st_mtime_ns).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    return folder, synthetic_class(folder)


@pytest.fixture(scope="module")
def releases():
    return {a: json.loads((ROOT / "exercises" / a / f"{a}.ipynb").read_text()) for a in assignments(ROOT)}


def _prepare(klass, releases, student):
    folder, _ = klass
    sub = next(s for s in read_submissions(folder) if s.student == student)
    name, nb, notes = _pick_notebook(sub, A, releases)
    fixed = repair.repair(nb, releases[A])
    return name, fixed, notes + fixed.notes


def _answer_source(fixed) -> str:
    return next(repair.text(c) for c in fixed.notebook.cells if repair.nbmeta(c).get("grade_id") == "lora_layer")


# --- repairs, without running anything ------------------------------------------------------------------------

def test_colab_copy_is_matched_by_content_and_its_metadata_restored(klass, releases):
    name, fixed, notes = _prepare(klass, releases, "colab_copy")
    assert name == f"Copy of {A}.ipynb"
    assert any("metadata missing or changed" in n for n in notes) and any("matched to" in n for n in notes)
    ids = [repair.nbmeta(c).get("grade_id") for c in fixed.notebook.cells]
    assert {"lora_layer", "test_shapes_and_init", "test_frozen_base", "test_forward_matches_reference"} <= set(ids)
    assert "self.scaling = alpha / r" in _answer_source(fixed)


def test_duplicated_moved_markdown_and_inserted_cells_are_repaired(klass, releases):
    _, fixed, notes = _prepare(klass, releases, "duplicated_answer_cell")
    assert any("appears 2 times" in n for n in notes)
    assert "self.scaling = alpha / r" in _answer_source(fixed), "the last filled-in copy is graded"
    _, fixed, notes = _prepare(klass, releases, "answer_turned_markdown")
    assert any("markdown cell: graded as code" in n for n in notes)
    assert next(c for c in fixed.notebook.cells if repair.nbmeta(c).get("grade_id") == "lora_layer").cell_type == "code"
    _, fixed, notes = _prepare(klass, releases, "moved_answer_to_end")
    assert any("moved" in n for n in notes)
    _, fixed, notes = _prepare(klass, releases, "inserted_helper_cell")
    cells = fixed.notebook.cells
    helper = next(i for i, c in enumerate(cells) if "def init_a" in repair.text(c))
    first_test = next(i for i, c in enumerate(cells) if repair.kind(c) == "test")
    assert helper < first_test and any("added by the student kept" in n for n in notes)


def test_changed_metadata_is_replaced_by_the_source(klass, releases):
    _, fixed, notes = _prepare(klass, releases, "metadata_changed")
    points = {repair.nbmeta(c)["grade_id"]: repair.nbmeta(c).get("points") for c in fixed.notebook.cells
              if repair.nbmeta(c).get("grade")}
    assert points == {"test_shapes_and_init": 2, "test_frozen_base": 2, "test_forward_matches_reference": 4, "why_scaling": 1}
    assert "self.scaling = alpha / r" in _answer_source(fixed)
    assert any("metadata missing or changed" in n for n in notes)


def test_tests_run_after_every_student_cell_and_come_from_the_source(klass, releases):
    _, fixed, notes = _prepare(klass, releases, "edited_tests_wrong_answer")
    kinds = [repair.kind(c) for c in fixed.notebook.cells if c.cell_type == "code"]
    assert kinds[kinds.index("test"):] == ["test"] * kinds.count("test"), "all test cells come last"
    release_tests = [repair.text(c) for c in releases[A]["cells"] if repair.kind(c) == "test"]
    assert [repair.text(c) for c in fixed.notebook.cells if repair.kind(c) == "test"] == release_tests
    assert sum("was edited: restored" in n for n in notes) == 3
    _, _, notes = _prepare(klass, releases, "deleted_tests")
    assert sum("was deleted: restored" in n for n in notes) == 3


@pytest.mark.parametrize("student, message", [
    ("pdf_only", "no notebook (.ipynb)"), ("truncated_json", "not valid JSON"), ("old_nbformat", "format 3"),
    ("wrong_assignment", "is the notebook of exercise 07-merge-unmerge, not 02-lora-layer"),
])
def test_unusable_submissions_get_one_clear_error(klass, releases, student, message):
    folder, _ = klass
    sub = next(s for s in read_submissions(folder) if s.student == student)
    with pytest.raises(repair.SubmissionError, match="Fix:") as err:
        _pick_notebook(sub, A, releases)
    assert message in str(err.value)


def test_several_notebooks_in_one_folder_the_assignment_is_found_by_content(klass, releases):
    name, _, notes = _prepare(klass, releases, "several_notebooks")
    assert name == "submission.ipynb" and any("ignored" in n for n in notes)


def test_zip_and_folder_read_the_same_submissions(klass, tmp_path):
    folder, expected = klass
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.rglob("*"):
            if f.is_file():
                z.write(f, Path("export") / f.relative_to(folder))
    a = {s.student: s.files for s in read_submissions(folder)}
    b = {s.student: s.files for s in read_submissions(archive)}
    assert a == b and len(a) == len(expected)


def test_cli_reports_a_bad_assignment_or_path_in_one_line(tmp_path, capsys):
    assert cli_main(["grade", "99-nope", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "unknown assignment" in capsys.readouterr().err
    assert cli_main(["grade", A, str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- the sandbox -------------------------------------------------------------------------------------------------

SANDBOX_PROBE = r'''
import json, os, socket, sys
os.environ["LORA_COURSE_SANDBOX_DIR"] = sys.argv[1]
os.environ["LORA_COURSE_SANDBOX_HIDE"] = sys.argv[2]
os.environ["LORA_COURSE_SANDBOX_MEMORY_MB"] = "2048"
# what torch's inductor leaves in the grader's environment once it has asked for its cache (kernels inherit it)
os.environ["TORCHINDUCTOR_CACHE_DIR"] = "/tmp/torchinductor_probe"
from lora_course.grading.sandbox_kernel import confine
report = confine()
def attempt(f):
    try:
        f()
        return "allowed"
    except (OSError, MemoryError) as e:
        return type(e).__name__
out = {
    "report": report,
    "read_secret": attempt(lambda: open(os.path.join(sys.argv[2], "gradebook.db")).read()),
    "write_package": attempt(lambda: open(os.path.join(sys.argv[3], "planted.py"), "w").write("x")),
    "write_own": attempt(lambda: open("mine.txt", "w").write("x")),
    "network": attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=2)),
    "memory": attempt(lambda: bytearray(3 << 30)),
    "inherited_cache": attempt(lambda: os.makedirs(os.path.join(os.environ["TORCHINDUCTOR_CACHE_DIR"], "x"))),
}
print(json.dumps(out))
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="namespaces are Linux only; elsewhere only limits apply")
def test_sandbox_hides_grading_files_blocks_network_and_writes(tmp_path):
    own, secret = tmp_path / "own", tmp_path / "course"
    own.mkdir()
    secret.mkdir()
    (secret / "gradebook.db").write_text("hidden tests live here")
    proc = subprocess.run([sys.executable, "-c", SANDBOX_PROBE, str(own), str(secret), str(ROOT / "lora_course")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["memory"] == "MemoryError"
    if "none:" in out["report"]["isolation"]:
        pytest.skip("this kernel does not allow user namespaces: " + out["report"]["isolation"])
    assert out["read_secret"] == "FileNotFoundError"
    assert out["write_package"] == "OSError"  # read-only file system
    assert out["write_own"] == "allowed"
    assert out["network"] == "OSError"
    assert out["inherited_cache"] == "allowed" and out["report"]["caches_moved"] == ["TORCHINDUCTOR_CACHE_DIR"]
    assert not (ROOT / "lora_course" / "planted.py").exists()


# --- end to end ------------------------------------------------------------------------------------------------

def _subset(klass, tmp_path, students):
    folder, expected = klass
    sub = tmp_path / "subset"
    for s in students:
        src = folder / s
        if src.is_dir():
            shutil.copytree(src, sub / s)
        else:
            shutil.copy(next(folder.glob(f"{s}.*")), sub)
    return sub, {s: expected[s] for s in students}


def _decoded(blob: str) -> str:
    try:
        return base64.b64decode(blob[: len(blob) // 4 * 4]).decode(errors="replace")
    except ValueError:
        return ""


def _check_outputs(out: Path, summary: dict, expected: dict, source: Path):
    assert summary["submissions"] == len(expected)
    for student, want in expected.items():
        if isinstance(want, tuple):
            assert student in summary["not_graded"], f"{student} should not be graded"
            assert want[1] in summary["not_graded"][student]
        else:
            assert summary["scores"].get(student) == want, f"{student}: expected {want}, got {summary['scores'].get(student)}"
    hidden = hidden_test_lines(source)
    assert len(hidden) > 5
    for html in (out / "feedback").glob("*.html"):
        text = html.read_text()
        text += "\n".join(_decoded(blob) for blob in re.findall(r"[A-Za-z0-9+/=]{40,}", text))  # base64 leaks
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{html.name} shows hidden test source: {leaked[:2]}"
    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == len(expected) + 1 and rows[0].startswith("student,status,score,max_score")
    assert (out / "summary.md").is_file()


def test_small_class_end_to_end(klass, tmp_path):
    """Right, wrong, Colab-stripped, hostile and broken submissions, graded through nbgrader in the sandbox."""
    sub, expected = _subset(klass, tmp_path, ["correct_alice", "colab_copy", "wrong_no_scaling", "alt_einsum", "patches_allclose",
                                               "reads_hidden_tests", "leaks_tests_through_errors", "heavy_cell_skipped_in_grading", "truncated_json", "pdf_only"])
    before = _tree_hash(sub)
    out = tmp_path / "out"
    summary = grade(A, sub, out, jobs=2, limits=LIMITS, progress=lambda m: None)
    assert _tree_hash(sub) == before, "grading must never change the submissions"
    _check_outputs(out, summary, expected, ROOT / "solutions" / A / f"{A}.ipynb")
    assert any("metadata" in n for n in summary["repaired"]["colab_copy"])
    assert any("changed what the tests compare with" in n for n in summary["repaired"]["patches_allclose"])
    assert summary["pass_rates"]["test_shapes_and_init"] == 7 / 8  # the error-raising leaker fails it


@pytest.mark.slow
def test_synthetic_class_end_to_end_exact_grades(klass, tmp_path):
    folder, expected = klass
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.rglob("*"):
            if f.is_file():
                z.write(f, Path("submissions") / f.relative_to(folder))
    before = hashlib.sha256(archive.read_bytes()).hexdigest()
    out = tmp_path / "out"
    summary = grade(A, archive, out, jobs=2, limits=LIMITS, progress=lambda m: None)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == before
    _check_outputs(out, summary, expected, ROOT / "solutions" / A / f"{A}.ipynb")
    notes = summary["repaired"]
    assert any("kernel died" in n for n in notes["kernel_killer"])
    assert any("changed what the tests compare with" in n for n in notes["swallows_test_errors"])
    print(f"\n{summary['submissions']} submissions in {summary['seconds']} s: {summary['submissions_per_minute']} / min")
    # grading again gives the same grades (a mixed subset, to keep the test's time reasonable)
    sub, _ = _subset(klass, tmp_path, ["correct_alice", "wrong_random_b", "alt_einsum", "swallows_test_errors",
                                      "patches_while_tested", "colab_copy", "kernel_killer", "truncated_json"])
    again = grade(A, sub, tmp_path / "again", jobs=2, limits=LIMITS, progress=lambda m: None)
    assert again["scores"] == {s: summary["scores"][s] for s in again["scores"]} and len(again["scores"]) == 7


FULL_CATALOG = os.environ.get("LORA_COURSE_QUICK_CATALOG") != "1"


def _catalogue_subset(assignment: str) -> list[str] | None:
    """The whole catalogue (about 53 submissions plus the references: a few minutes on two cores). With
    LORA_COURSE_QUICK_CATALOG=1, for iterating on one exercise: every alternative answer and one wrong one."""
    if FULL_CATALOG:
        return None
    from lora_course.grading.variants import variant_files

    names = [p.stem for p in variant_files(assignment)]
    return [n for n in names if n.startswith("alt_")] + [n for n in names if n.startswith("wrong_")][:1]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", assignments(ROOT))
def test_catalogue_wrong_answers_lose_points_alternatives_get_full_marks(assignment):
    from lora_course.grading.catalog import check

    rows = check(assignment, only=_catalogue_subset(assignment))
    bad = [r for r in rows if not r[4]]
    assert not bad, "\n".join(f"{s}: expected {w}, got {sc}/{mx} ({why})" for s, w, sc, mx, _, why in bad)
    assert sum(r[1] == "less" for r in rows) >= 1 and sum(r[1] == "full" for r in rows) >= 2
    if FULL_CATALOG:
        assert sum(r[1] == "less" for r in rows) >= 4
