"""Submissions made from the exercise notebook with chosen answers: the reference solution, the catalogue of
plausible wrong answers and of different-but-correct ones (``autograder/variants/<assignment>/``), and the
messes real submissions arrive in. Used by the tests that grade them through the real autograder.

A variant file holds one or more ``# %% answer id=GRADE_ID`` cells (the format of autograder/sources);
answers it does not name are the reference solution's. ``wrong_*.py`` must lose points, ``alt_*.py`` must not.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from lora_course.grading.course import repo_root
from lora_course.grading.repair import kind, nbmeta, text
from lora_course.grading.source_format import parse_cells

DELIMS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*(\n|$)", re.M)


def exercise(assignment: str, root: Path | None = None) -> dict:
    root = root or repo_root()
    return json.loads((root / "exercises" / assignment / f"{assignment}.ipynb").read_text())


def solution_answers(assignment: str, root: Path | None = None) -> dict[str, str]:
    root = root or repo_root()
    nb = json.loads((root / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    return {nbmeta(c)["grade_id"]: DELIMS.sub("", text(c)) for c in nb["cells"] if kind(c) in ("answer", "written")}


def variant_files(assignment: str, root: Path | None = None) -> list[Path]:
    return sorted(((root or repo_root()) / "autograder" / "variants" / assignment).glob("*.py"))


def variant_answers(path: Path) -> dict[str, str]:
    return {c["id"]: c["source"] + "\n" for c in parse_cells(path.read_text(), str(path)) if c["kind"] == "answer"}


def fill(assignment: str, answers: dict[str, str] | None = None, root: Path | None = None,
         release: dict | None = None) -> dict:
    """The exercise notebook as a student who wrote ``answers`` (default: the reference solution) hands it in.
    ``release``: the released notebook to fill (default: ``exercises/<assignment>``), e.g. the grader's own."""
    nb = copy.deepcopy(release if release is not None else exercise(assignment, root))
    chosen = {**solution_answers(assignment, root), **(answers or {})}
    for c in nb["cells"]:
        gid = nbmeta(c).get("grade_id")
        if gid in chosen:
            c["source"] = chosen[gid]
    return nb


def dumps(nb: dict) -> bytes:
    return json.dumps(nb, indent=1).encode()
