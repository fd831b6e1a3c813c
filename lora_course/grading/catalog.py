"""Grade the catalogue of answers of an assignment through the real autograder: the reference solution and every
``alt_*`` variant must get full marks, every ``wrong_*`` variant must lose points.

    python -m lora_course.grading.catalog [ASSIGNMENT ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lora_course.grading.course import assignments
from lora_course.grading.pipeline import Limits, grade
from lora_course.grading.variants import dumps, fill, variant_answers, variant_files


def catalog_class(assignment: str, folder: Path, only: list[str] | None = None) -> dict[str, str]:
    """Write one submission per variant (plus the reference) into ``folder``; return student -> expectation."""
    expected = {"reference": "full"}
    (folder / "reference").mkdir(parents=True)
    (folder / "reference" / f"{assignment}.ipynb").write_bytes(dumps(fill(assignment)))
    for path in variant_files(assignment):
        if only and path.stem not in only:
            continue
        student = path.stem
        (folder / student).mkdir()
        (folder / student / f"{assignment}.ipynb").write_bytes(dumps(fill(assignment, variant_answers(path))))
        expected[student] = "full" if student.startswith("alt_") else "less"
    return expected


def check(assignment: str, only: list[str] | None = None, jobs: int = 2) -> list[tuple[str, str, float, float, bool, str]]:
    """[(student, expectation, score, max, ok, why)]: ``why`` names the checks that lost points and their errors."""
    with tempfile.TemporaryDirectory() as tmp:
        expected = catalog_class(assignment, Path(tmp) / "class", only)
        summary = grade(assignment, Path(tmp) / "class", Path(tmp) / "out", jobs=jobs,
                        limits=Limits(cell_timeout=120, notebook_timeout=600), progress=lambda m: None)
    rows = []
    for student, want in expected.items():
        score = summary["scores"].get(student)
        ok = score is not None and ((score == summary["max_score"]) == (want == "full"))
        why = summary["not_graded"].get(student) or "; ".join(
            f"{name}: {err or 'no error message'}" for name, err in summary["failed_checks"].get(student, {}).items())
        rows.append((student, want, score if score is not None else float("nan"), summary["max_score"], ok, why))
    return rows


if __name__ == "__main__":
    bad = 0
    for a in sys.argv[1:] or assignments():
        for student, want, score, mx, ok, why in check(a):
            bad += not ok
            print(f"{a:28s} {student:36s} expected {want:4s} got {score:g}/{mx:g} {'ok' if ok else 'WRONG'}"
                  + ("" if ok else f"  ({why})"), flush=True)
    sys.exit(1 if bad else 0)
