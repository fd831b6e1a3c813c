"""The grader on what classes really hand in (issue 15): answers spread over several cells, several copies of the
notebook, section/Canvas/Moodle layouts, outputs for an LMS and Gradescope, and a kernel that sees none of the
instructor's environment. One grading run covers the end-to-end cases; the rest runs nothing."""

from __future__ import annotations

import csv
import json
import os
import re
import time
import zipfile
from pathlib import Path

import pytest

from lora_course.grading import repair
from lora_course.grading.feedback import hidden_test_lines
from lora_course.grading.pipeline import _pick_notebook, grade
from lora_course.grading.submissions import read_class, read_submissions
from lora_course.grading.synthetic import (
    CLASS_LIMITS,
    A,
    _correct,
    _variant,
    _with_answer,
)
from lora_course.grading.variants import dumps, exercise, fill, solution_answers

ROOT = Path(__file__).resolve().parents[1]
NB = f"{A}.ipynb"


def code(src: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": src}


def answer_cell(nb: dict) -> dict:
    return next(c for c in nb["cells"] if repair.kind(c) == "answer")


def insert_after(nb: dict, cell: dict, *sources: str) -> dict:
    i = nb["cells"].index(cell)
    nb["cells"][i + 1:i + 1] = [code(s) for s in sources]
    return nb


def runs(fixed) -> list[str]:
    """The code the graded notebook runs before its tests, cell by cell."""
    return [repair.text(c) for c in fixed.notebook.cells if c.cell_type == "code" and repair.kind(c) != "test"]


def last_definition(fixed, name: str) -> str:
    """The source of the last cell (before the tests) that defines ``name`` at its top level: what the tests see."""
    return [s for s in runs(fixed) if name in repair._top_defs(s)][-1]


CORRECT = _correct()
NO_SCALING = _variant("wrong_no_scaling")
CLASS_BODY = CORRECT.split("\n", 1)[1]


# --- 1. answers written across cells ----------------------------------------------------------------------------

def split_helper_then_class() -> dict:
    """The answer cell holds a helper only; the class that uses it is in the next, added, cell."""
    nb = exercise(A)
    ans = answer_cell(nb)
    ans["source"] = "def lora_scaling(alpha, r):\n    return alpha / r\n"
    return insert_after(nb, ans, CORRECT.replace("self.scaling = alpha / r", "self.scaling = lora_scaling(alpha, r)"))


def split_class_needs_class() -> dict:
    """The answer builds on a class of the student's, defined in a cell added *above* the answer cell."""
    nb = exercise(A)
    ans = answer_cell(nb)
    ans["source"] = CORRECT.replace("class LoRALayer(nn.Module):", "class LoRALayer(FrozenBase):").replace(
        "        self.base = base\n        self.base.requires_grad_(False)\n", "        self.freeze(base)\n")
    i = nb["cells"].index(ans)
    nb["cells"].insert(i, code("class FrozenBase(nn.Module):\n    def freeze(self, base):\n        self.base = base\n"
                                "        self.base.requires_grad_(False)\n"))
    return nb


def stub_left_definition_later() -> dict:
    """The answer cell is left as released; the class is written in a cell at the very end (after the tests)."""
    nb = exercise(A)
    nb["cells"].append(code("import math\n\n" + CORRECT))
    return nb


def redefined_after_wrong_attempt(first: str, second: str) -> dict:
    nb = _with_answer(first)
    nb["cells"].append(code(second))  # after the test cells, as students append a second try
    return nb


def colab_split() -> dict:
    """Colab strips the metadata, and the class is split from a helper written after it."""
    nb = _with_answer(CORRECT.replace("nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))", "init_a(self.A)"))
    nb = insert_after(nb, answer_cell(nb), "def init_a(t):\n    nn.init.kaiming_uniform_(t, a=math.sqrt(5))\n")
    for c in nb["cells"]:
        c["metadata"] = {}
    return nb


SPLIT_CASES = {  # student -> (notebook, points out of 8)
    "split_helper_then_class": (split_helper_then_class, 8.0),
    "split_class_needs_class": (split_class_needs_class, 8.0),
    "stub_left_definition_later": (stub_left_definition_later, 8.0),
    "redefined_right_after_wrong": (lambda: redefined_after_wrong_attempt(NO_SCALING, CORRECT), 8.0),
    "redefined_wrong_after_right": (lambda: redefined_after_wrong_attempt(CORRECT, NO_SCALING), 4.0),
}


@pytest.fixture(scope="module")
def release():
    return exercise(A)


@pytest.mark.parametrize("student", sorted(SPLIT_CASES))
def test_answers_across_cells_the_stub_never_runs_after_the_students_definition(student, release):
    build, points = SPLIT_CASES[student]
    fixed = repair.repair(build(), release)
    final = last_definition(fixed, "LoRALayer")
    want_scaling = points == 8.0
    assert ("scaling" in final and "* self.scaling" in final) == want_scaling, final
    assert not any(m in s for s in runs(fixed) for m in repair.STUB_MARKERS), "a released stub still runs"
    assert not any("not found" in n for n in fixed.notes), fixed.notes
    # every helper the student wrote runs before the tests, the class's own helpers included
    src = "\n".join(runs(fixed))
    written = json.dumps(build())
    for helper in ("def lora_scaling", "class FrozenBase", "def init_a"):
        assert (helper in written) == (helper in src), helper


def test_split_notes_say_what_was_run(release):
    notes = repair.repair(stub_left_definition_later(), release).notes
    assert any("left as released" in n for n in notes)
    notes = repair.repair(redefined_after_wrong_attempt(NO_SCALING, CORRECT), release).notes
    assert any("appears 2 times" in n and "last definition counts" in n for n in notes)


def test_two_answers_in_one_cell_and_split_definitions_of_one_answer():
    """Exercises with several answers: both written in the first answer cell (the second left as released must not
    overwrite it), and an answer made of two functions written in two cells (06's quantize)."""
    a1 = "01-memory-breakdown"
    rel = exercise(a1)
    sol = solution_answers(a1)
    nb = fill(a1, {"memory_breakdown": next(repair.text(c) for c in rel["cells"]
                                            if repair.nbmeta(c).get("grade_id") == "memory_breakdown")})
    both = sol["bytes_per_parameter"] + "\n\n" + sol["memory_breakdown"]
    next(c for c in nb["cells"] if repair.nbmeta(c).get("grade_id") == "bytes_per_parameter")["source"] = both
    fixed = repair.repair(nb, rel)
    assert last_definition(fixed, "memory_breakdown") == both
    assert last_definition(fixed, "bytes_per_parameter") == both

    a6 = "06-nf4-quantization"
    rel = exercise(a6)
    sol = solution_answers(a6)["quantize"]
    cut = sol.index("def dequantize_nf4")
    nb = fill(a6)
    quant = next(c for c in nb["cells"] if repair.nbmeta(c).get("grade_id") == "quantize")
    quant["source"] = sol[:cut]
    insert_after(nb, quant, sol[cut:])
    fixed = repair.repair(nb, rel)
    assert last_definition(fixed, "quantize_nf4") == sol[:cut] and last_definition(fixed, "dequantize_nf4") == sol[cut:]
    assert any("written across 2 cells" in n for n in fixed.notes)
    assert repair.answered(nb, rel) == 2 and repair.answered(exercise(a6), rel) == 0


# --- 2. several copies of the notebook ---------------------------------------------------------------------------

def _put(path: Path, nb: dict, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dumps(nb))
    os.utime(path, (mtime, mtime))


NOW = time.time()
PICK_CASES = {  # student -> ({file: (notebook, age in hours)}, file to grade, what the note must say, points)
    "blank_and_numbered_copy": ({NB: (exercise(A), 0), f"{A} (1).ipynb": (_with_answer(CORRECT), 5)},
                                f"{A} (1).ipynb", "has none", 8.0),
    "copy_of_filled": ({NB: (exercise(A), 1), f"Copy of {NB}": (_with_answer(CORRECT), 2)},
                       f"Copy of {NB}", "has none", 8.0),
    "two_filled_newest_wins": ({NB: (_with_answer(CORRECT), 48), f"{A}-final.ipynb": (_with_answer(NO_SCALING), 1)},
                               f"{A}-final.ipynb", "most recently modified", 4.0),
    "checkpoint_never_chosen": ({NB: (_with_answer(NO_SCALING), 3),
                                 f".ipynb_checkpoints/{A}-checkpoint.ipynb": (_with_answer(CORRECT), 0)},
                                NB, "", 4.0),
}


def write_pick_cases(folder: Path) -> None:
    for student, (files, _, _, _) in PICK_CASES.items():
        for name, (nb, hours) in files.items():
            _put(folder / student / name, nb, NOW - hours * 3600)


def test_the_copy_with_answers_then_the_newest_is_graded_and_the_note_says_why(tmp_path, release):
    write_pick_cases(tmp_path)
    subs = {s.student: s for s in read_submissions(tmp_path)}
    for student, (_, want, why, _) in PICK_CASES.items():
        name, _, notes = _pick_notebook(subs[student], A, {A: release})
        assert name == want, (student, name, notes)
        if why:
            assert any(n.startswith(f"graded {want}") and why in n for n in notes), notes
        assert not any("checkpoint" in n for n in notes)
    # in a zip too, by the entries' times
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(tmp_path.rglob("*.ipynb")):
            z.write(f, f.relative_to(tmp_path))
    sub = next(s for s in read_submissions(archive) if s.student == "two_filled_newest_wins")
    assert _pick_notebook(sub, A, {A: release})[0] == f"{A}-final.ipynb"


# --- 3. class layouts ------------------------------------------------------------------------------------------

def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def nb_bytes():
    return dumps(_with_answer(CORRECT))


def test_sections_in_a_wrapping_folder(tmp_path, nb_bytes):
    k = read_class(_zip(tmp_path / "c.zip", {
        f"export/section-A/alice/{NB}": nb_bytes, f"export/section-A/bob/{NB}": nb_bytes,
        f"export/section-A/bob/.ipynb_checkpoints/{A}-checkpoint.ipynb": nb_bytes,
        f"export/section-B/carol/{NB}": nb_bytes, "export/section-B/dave.ipynb": nb_bytes,
        f"export/__MACOSX/section-A/alice/._{NB}": b"junk", "export/.DS_Store": b"junk"}))
    got = {(s.section, s.student): sorted(s.files) for s in k.submissions}
    assert got == {("section-A", "alice"): [NB], ("section-A", "bob"): [NB], ("section-B", "carol"): [NB],
                   ("section-B", "dave"): ["dave.ipynb"]}
    assert "2 section folder(s)" in k.layout and "inside export/" in k.layout
    # a section holding both a student's notebook and student folders is graded as above, and said to be unusual
    assert k.warnings == [("ambiguous: section-B/ holds both notebooks and folders of notebooks; read as a section "
                           "(its notebooks as students by file name)")]


def test_canvas_export_one_student_per_user_id(tmp_path, nb_bytes):
    k = read_class(_zip(tmp_path / "canvas.zip", {
        f"leealice_1001_5001_{NB}": nb_bytes, f"leealice_1001_5002_{A}-1.ipynb": nb_bytes,  # a resubmission
        f"kimbo_LATE_1002_5003_Copy of {NB}": nb_bytes, "__MACOSX/._kimbo_LATE_1002_5003_x.ipynb": b"junk",
        "parkcho_1003_5004_notes.pdf": b"%PDF"}))
    subs = {s.identifier: s for s in k.submissions}
    assert sorted(subs) == ["1001", "1002", "1003"] and all(s.lms == "canvas" for s in subs.values())
    assert sorted(subs["1001"].files) == [f"{A}-1.ipynb", NB] and subs["1002"].student == "kimbo_1002"
    assert list(subs["1003"].files) == ["notes.pdf"]  # graded: "no notebook", not dropped


def test_moodle_export_folders_and_files_in_sections(tmp_path, nb_bytes):
    k = read_class(_zip(tmp_path / "moodle.zip", {
        f"Alice Lee_2001_assignsubmission_file_/{NB}": nb_bytes,
        f"Bo Kim_2002_assignsubmission_file_/work/{NB}": nb_bytes,
        f"Bo Kim_2002_assignsubmission_file_/work/.ipynb_checkpoints/{A}-checkpoint.ipynb": nb_bytes,
        f"Cho Park_2003_assignsubmission_file_{NB}": nb_bytes}))
    subs = {s.identifier: s for s in k.submissions}
    assert {i: (s.student, sorted(s.files), s.lms) for i, s in subs.items()} == {
        "2001": ("Alice Lee", [NB], "moodle"), "2002": ("Bo Kim", [f"work/{NB}"], "moodle"),
        "2003": ("Cho Park", [NB], "moodle")}
    # a section of Moodle folders, one student name shared by two people with different ids
    k = read_class(_zip(tmp_path / "moodle2.zip", {
        f"group 1/Jo Lee_3001_assignsubmission_file_/{NB}": nb_bytes,
        f"group 1/Jo Lee_3002_assignsubmission_file_/{NB}": nb_bytes}))
    assert sorted(s.student for s in k.submissions) == ["Jo Lee_3001", "Jo Lee_3002"]
    assert {s.section for s in k.submissions} == {"group 1"}


def test_ambiguous_layouts_are_reported(tmp_path, nb_bytes):
    k = read_class(_zip(tmp_path / "amb.zip", {
        f"section-A/alice/{NB}": nb_bytes, f"section-A/bob/{NB}": nb_bytes,
        f"section-B/alice/{NB}": nb_bytes, f"section-B/carol/{NB}": nb_bytes,
        f"erin/{NB}": nb_bytes, f"erin/old/{NB}": nb_bytes,  # notebooks beside a folder of notebooks
        "README.txt": b"grades due friday"}))
    students = sorted(s.student for s in k.submissions)
    assert students == ["bob", "carol", "erin", "section-A/alice", "section-B/alice"]
    text = "\n".join(k.warnings)
    assert "'alice' appears in section-A and section-B" in text
    assert "erin/ holds both notebooks and folders of notebooks" in text
    assert "ignored README.txt" in text
    assert len({s.student_id for s in k.submissions}) == 5


# --- 1-5 end to end: one grading run ---------------------------------------------------------------------------

SECRETS = {"HF_TOKEN": "hf_SeCrEt0123456789", "GITHUB_TOKEN": "ghp_SeCrEt0123456789",
           "AWS_SECRET_ACCESS_KEY": "aws/SeCrEt0123456789"}
ENV_PROBE = CORRECT.replace("        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scaling", '''\
        import os
        proc = open("/proc/self/environ", "rb").read().decode(errors="replace") if os.path.exists("/proc/self/environ") else ""
        found = sorted(k for k in os.environ if k.endswith(("_TOKEN", "_KEY", "PASSWORD")))
        leaked = [v for v in os.environ.values() if "SeCrEt" in v] + (["in /proc"] if "SeCrEt" in proc else [])
        raise RuntimeError(f"ENVCHECK names={found} leaked={leaked} home={os.environ.get('HOME')} "
                           f"n={len(os.environ)} all={sorted(os.environ)}")''')


def test_layouts_splits_copies_lms_outputs_and_a_clean_environment_end_to_end(tmp_path, monkeypatch):
    folder = tmp_path / "class" / "spring"  # a wrapping folder, two sections
    expected: dict[str, float] = {}
    for i, (student, (build, pts)) in enumerate(sorted(SPLIT_CASES.items())):
        _put(folder / ("section-A" if i % 2 else "section-B") / student / NB, build(), NOW)
        expected[student] = pts
    picks = ["blank_and_numbered_copy", "two_filled_newest_wins"]
    write_pick_cases(folder / "section-A")
    for s in set(PICK_CASES) - set(picks):
        for f in sorted((folder / "section-A" / s).rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        (folder / "section-A" / s).rmdir()
    expected.update({s: PICK_CASES[s][3] for s in picks})
    _put(folder / "section-B" / "env_probe" / NB, _with_answer(ENV_PROBE), NOW)
    expected["env_probe"] = 0.0  # every test cell calls forward, which raises with what the kernel sees
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((tmp_path / "class").rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(tmp_path / "class"))

    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    lines: list[str] = []
    out = tmp_path / "out"
    t = time.perf_counter()
    summary = grade(A, archive, out, jobs=2, limits=CLASS_LIMITS, progress=lines.append)
    print(f"\n{len(expected)} submissions in {time.perf_counter() - t:.0f} s")

    assert summary["scores"] == {s: expected[s] for s in expected}, summary.get("repaired")
    # 3: the roster is printed before grading, and kept
    roster_at = next(i for i, l in enumerate(lines) if "student(s) found" in l)
    first_graded = next(i for i, l in enumerate(lines) if l.startswith("[1/"))
    assert roster_at < first_graded and "2 section folder(s)" in lines[roster_at] and "inside spring/" in lines[roster_at]
    assert any(f"blank_and_numbered_copy <- {A} (1).ipynb" in l for l in lines[roster_at:first_graded])
    assert len(lines[roster_at:first_graded]) <= 1 + 12 + 1 + 20
    students = {s["student"]: s for s in summary["students"]}
    assert set(students) == set(expected) and students["env_probe"]["section"] == "section-B"
    assert "most recently modified" in students["two_filled_newest_wins"]["why"]
    assert summary["layout"]["warnings"] == []
    # 2: the student is told which file was graded and why
    fb = (out / "feedback" / "blank_and_numbered_copy.html").read_text()
    assert f"graded {A} (1).ipynb" in fb and "has none" in fb

    # 4: LMS and Gradescope outputs
    rows = list(csv.DictReader((out / "grades-lms.csv").open()))
    assert [r["student"] for r in rows] == sorted(expected) and all(r["max_score"] == "8" for r in rows)
    assert {r["student"]: float(r["score"]) for r in rows} == expected
    assert all((out / "feedback" / r["feedback_file"]).is_file() for r in rows)
    hidden = hidden_test_lines(ROOT / "solutions" / A / f"{A}.ipynb")
    for student, points in expected.items():
        res = json.loads((out / "results" / f"{student}.json").read_text())
        assert set(res) == {"score", "max_score", "tests", "output"} and res["score"] == points
        assert res["max_score"] == 8 and sum(t["max_score"] for t in res["tests"]) == 8
        assert all(set(t) == {"name", "score", "max_score", "output"} for t in res["tests"])
        text = json.dumps(res)
        assert not [h for h in hidden if h in text], f"{student}: hidden test source in results"

    # 5: the kernel saw none of the grader's secrets, and the probe did run (its message is in the feedback)
    fb = (out / "feedback" / "env_probe.html").read_text()
    res = (out / "results" / "env_probe.json").read_text()
    assert "ENVCHECK" in fb and "ENVCHECK" in res
    assert re.search(r"names=\[\]", fb) and "leaked=[]" in fb, fb
    for name, value in SECRETS.items():
        for produced in (out / "feedback").glob("*.html"):
            assert value not in produced.read_text() and name not in produced.read_text()
        for produced in [*(out / "results").glob("*.json"), out / "summary.json", out / "grades.csv"]:
            assert value not in produced.read_text(), produced
