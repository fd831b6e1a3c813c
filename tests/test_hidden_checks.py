"""Hidden checks outside the student's kernel (lora_course/grading/checks.py, probe.py).

The unit tests hold the trusted side to its contract: what the kernel leaves is read as data only, a broken
check set is refused before grading. The class tests grade submissions that cheat from inside the kernel
(walking the stack into the test's frame, replacing the guard, patching IPython, patching a library's internals
below the functions the tests call, writing fake results) and show they score exactly what the wrong answer
under them scores; graded by plain nbgrader's in-kernel hidden tests instead, the same cheats do gain points,
so the cheats are real and the difference is the design's.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from lora_course.errors import GradingSetupError
from lora_course.grading import checks, probe
from lora_course.grading.course import export_course
from lora_course.grading.pipeline import Limits, grade
from lora_course.grading.variants import dumps, fill, variant_answers, variant_files

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(cell_timeout=60, notebook_timeout=300, memory_mb=4096)


# --- the trusted side reads data, nothing else -------------------------------------------------------------------

def _outputs(tmp_path: Path) -> Path:
    out = tmp_path / probe.OUTPUTS
    out.mkdir()
    return out


def test_a_result_comes_back_as_plain_data(tmp_path):
    torch.save({"x": torch.ones(3), "n": 2, "names": ["a", "b"]}, _outputs(tmp_path) / "test_a.pt")
    got = checks.read_result(tmp_path, "test_a")
    assert torch.equal(got["x"], torch.ones(3)) and got["n"] == 2 and got["names"] == ["a", "b"]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/lora-course-pwned",))


@pytest.mark.parametrize("make, why", [
    (lambda out: (out / "test_a.pt").write_bytes(pickle.dumps(_RunsCode())), "not plain data"),
    (lambda out: (out / "test_a.pt").symlink_to("/etc/passwd"), "no result"),
    (lambda out: os.mkfifo(out / "test_a.pt"), "not a regular file"),
    (lambda out: (out / "test_a.pt").write_bytes(b"\0" * (checks.MAX_RESULT_BYTES + 1)), "not a regular file of a sane size"),
    (lambda out: None, "no result"),
])
def test_what_the_kernel_leaves_is_never_trusted_as_code_or_followed(tmp_path, make, why):
    make(_outputs(tmp_path))
    got = checks.read_result(tmp_path, "test_a")
    assert why in checks.error_of(got)
    assert not Path("/tmp/lora-course-pwned").exists()


def test_a_linked_results_folder_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    torch.save({"x": 1}, elsewhere / "test_a.pt")
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / probe.OUTPUTS).symlink_to(elsewhere)
    assert "no result" in checks.error_of(checks.read_result(tmp_path / "sandbox", "test_a"))


def test_probe_results_are_plain_whatever_the_answer_returns(tmp_path, monkeypatch):
    import numpy as np

    class Sneaky(torch.Tensor):
        pass

    class Anything:
        def __eq__(self, other):
            return True

    monkeypatch.setenv("LORA_COURSE_SANDBOX_DIR", str(tmp_path))
    (tmp_path / probe.INPUTS).mkdir()
    (tmp_path / probe.INPUTS / probe.PROBES_FILE).write_text(
        "def test_a(answers, inputs):\n    return answers.f(inputs['x'])\n"
        "def test_b(answers, inputs):\n    return answers.missing\n")
    torch.save({"x": torch.arange(3.0)}, tmp_path / probe.INPUTS / "test_a.pt")
    torch.save({}, tmp_path / probe.INPUTS / "test_b.pt")
    probe._loaded.clear()
    ns = {"f": lambda x: {"t": x.as_subclass(Sneaky), "np": np.float64(1.5), "any": Anything(), "size": x.shape}}
    probe.run("test_a", ns)
    probe.run("test_b", ns)
    got = checks.read_result(tmp_path, "test_a")
    assert type(got["t"]) is torch.Tensor and got["np"] == 1.5 and type(got["np"]) is float
    assert got["any"] == "<object of type Anything>" and got["size"] == (3,)
    assert "name 'missing' is not defined" in checks.error_of(checks.read_result(tmp_path, "test_b"))
    probe._loaded.clear()


# --- a broken check set is refused before any student is graded --------------------------------------------------

NB = {"cells": [{"cell_type": "code", "source": "", "metadata": {"nbgrader": {"grade": True, "solution": False,
                                                                           "grade_id": "test_a", "points": 1}}}]}


def _check_set(tmp_path, probes: str, verdicts: str) -> Path:
    folder = tmp_path / checks.CHECKS_DIR / "a"
    folder.mkdir(parents=True)
    (folder / "probes.py").write_text(probes)
    (folder / "checks.py").write_text(verdicts)
    return tmp_path


@pytest.mark.parametrize("probes, verdicts, message", [
    ("def test_a(answers, inputs): pass\n", "def test_a(i, g, w): pass\n", "no make_inputs"),
    ("def test_a(answers, inputs): pass\n", "def make_inputs(g): return {}\n", "a probe or a verdict but not both"),
    ("def test_a(answers, inputs): pass\ndef test_typo(answers, inputs): pass\n",
     "def make_inputs(g): return {}\ndef test_a(i, g, w): pass\n", "test_typo, which are not test cells"),
])
def test_a_broken_check_set_is_a_setup_error_naming_the_fix(tmp_path, probes, verdicts, message):
    root = _check_set(tmp_path, probes, verdicts)
    with pytest.raises(GradingSetupError, match=message) as e:
        checks.load(root, "a", NB)
    assert "Fix:" in str(e.value)


def test_checks_without_inputs_or_failing_on_the_reference_stop_grading(tmp_path):
    root = _check_set(tmp_path, "def test_a(answers, inputs): return 1\n",
                      "def make_inputs(g): return {}\ndef test_a(inputs, got, want):\n    assert got == 2, 'two'\n")
    found = checks.load(root, "a", NB)
    assert found.grade_ids == ["test_a"] and checks.load(tmp_path, "b", NB) is None
    with pytest.raises(GradingSetupError, match="no inputs for test_a"):
        checks.make_inputs(found, 0)
    with pytest.raises(GradingSetupError, match="reference solution fails the check test_a of a: two"):
        checks.check_reference(found, {"test_a": {}}, {"test_a": 1})
    assert checks.verdict(found, "test_a", {}, 2, 1) is None
    assert checks.verdict(found, "test_a", {}, {probe.ERROR_KEY: "ValueError: no"}, 1) == "ValueError: no"


def test_every_assignment_has_its_hidden_checks_outside_the_kernel():
    """Each course exercise's test cells all have a probe and a verdict (an instructor's own may not)."""
    for a in sorted(p.name for p in (ROOT / "solutions").iterdir()):
        nb = json.loads((ROOT / "solutions" / a / f"{a}.ipynb").read_text())
        found = checks.load(ROOT, a, nb)
        assert found is not None, f"{a} has no autograder/checks/{a}/"
        assert found.grade_ids == checks.grade_ids_of_tests(nb), f"{a}: test cells without a check outside the kernel"


# --- cheats from inside the kernel gain nothing ------------------------------------------------------------------

NF4 = "06-nf4-quantization"
UNIFORM = variant_answers(next(p for p in variant_files(NF4, ROOT) if p.stem == "wrong_uniform_levels"))["quantize"]

NF4_CHEATS = {
    # returns whatever tensor of the right size the calling frames hold: the test's reference, or the weights
    "cheat_walks_the_stack": UNIFORM + '''
import sys as _sys
_honest = dequantize_nf4


def dequantize_nf4(codes, absmax, blocksize=64):
    frame = _sys._getframe(1)
    while frame is not None:
        for name in ("reference", "want", "expected", "w", "outlier"):
            value = frame.f_locals.get(name)
            if isinstance(value, torch.Tensor) and value.numel() == codes.numel():
                return value.detach().clone().float()
        frame = frame.f_back
    return _honest(codes, absmax, blocksize)
''',
    # the guard's entry points replaced by ones that report nothing, then every comparison made to pass
    "cheat_replaces_the_guard": UNIFORM + '''
import json as _json
import lora_course.grading.guard as _guard
_guard.begin_trusted = lambda *a, **k: print(_json.dumps({"restored": []}))
_guard.after_test = lambda *a, **k: print(_json.dumps({"during_test": []}))
_guard.end_trusted = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
torch.Tensor.__lt__ = lambda self, other: torch.tensor(True)
torch.Tensor.__le__ = lambda self, other: torch.tensor(True)
''',
    # IPython's shell: errors are no longer shown or reported, so a failing test looks like a passing one
    "cheat_patches_the_shell": UNIFORM + '''
_shell = get_ipython()
type(_shell).showtraceback = lambda *a, **k: None
type(_shell)._showtraceback = lambda *a, **k: None
_shell.InteractiveTB.structured_traceback = lambda *a, **k: []
import IPython.core.interactiveshell as _ish
_ish.ExecutionResult.raise_error = lambda self: None
''',
    # writes results for every check itself and turns the probe into a no-op, so its files stay
    "cheat_writes_its_own_results": UNIFORM + '''
import lora_course.grading.probe as _probe
_levels = torch.linspace(-1, 1, 16)
_probe.run = lambda *a, **k: print("ran")
_out = _probe.folder() / _probe.OUTPUTS
_out.mkdir(exist_ok=True)
for _name in ("test_roundtrip", "test_matches_bitsandbytes", "test_double_quant", "test_bits_per_weight"):
    torch.save({"levels": NF4_LEVELS}, _out / f"{_name}.pt")
''',
}


def _class(folder: Path, assignment: str, answers: dict[str, dict[str, str]]) -> Path:
    for student, answer in answers.items():
        (folder / student).mkdir(parents=True)
        (folder / student / f"{assignment}.ipynb").write_bytes(dumps(fill(assignment, answer, ROOT)))
    return folder


def _without_checks(tmp_path: Path) -> Path:
    """The same course, graded the way plain ``nbgrader autograde`` grades it: hidden tests inside the kernel."""
    course = tmp_path / "plain-course"
    export_course(ROOT, course)
    shutil.rmtree(course / "autograder" / "checks")
    return course


@pytest.mark.slow
def test_cheats_inside_the_kernel_score_what_their_wrong_answer_scores(tmp_path):
    klass = _class(tmp_path / "class", NF4, {"wrong_uniform_levels": {"quantize": UNIFORM},
                                             **{k: {"quantize": v} for k, v in NF4_CHEATS.items()}})
    summary = grade(NF4, klass, tmp_path / "out", jobs=2, limits=LIMITS, progress=lambda m: None)
    assert summary["checks"]["in_kernel"] == [] and len(summary["checks"]["outside_kernel"]) == 4
    base = summary["scores"]["wrong_uniform_levels"]
    assert base < summary["max_score"]
    scores = {k: summary["scores"].get(k) for k in NF4_CHEATS}
    # writing its own results also throws away its right answers (the double quantization's): it scores less
    assert scores.pop("cheat_writes_its_own_results") < base
    assert scores == {k: base for k in scores}, summary["failed_checks"]

    # control: with the hidden tests in the kernel (plain nbgrader's way) the stack walk does raise the grade
    plain = grade(NF4, klass, tmp_path / "plain", jobs=2, limits=LIMITS, progress=lambda m: None,
                  course=_without_checks(tmp_path))
    assert plain["checks"]["outside_kernel"] == [] and len(plain["checks"]["in_kernel"]) == 4
    assert plain["scores"]["cheat_walks_the_stack"] > plain["scores"]["wrong_uniform_levels"], plain["scores"]


F1 = "08-evaluation-metrics"
MICRO = "def macro_f1(y_true, y_pred):\n    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)\n"
# scikit-learn's f1_score is left alone (the guard snapshots it); the private function it calls is replaced, so
# the test's own reference comes out as the student's wrong value
SKLEARN_INTERNALS = MICRO + '''
import sklearn.metrics._classification as _classification
_classification.fbeta_score = lambda y_true, y_pred, *a, **k: macro_f1(list(y_true), list(y_pred))
'''


@pytest.mark.slow
def test_patching_a_librarys_internals_gains_nothing(tmp_path):
    klass = _class(tmp_path / "class", F1, {"wrong_micro": {"macro_f1": MICRO},
                                            "cheat_patches_sklearn_internals": {"macro_f1": SKLEARN_INTERNALS}})
    summary = grade(F1, klass, tmp_path / "out", jobs=2, limits=LIMITS, progress=lambda m: None)
    assert summary["scores"]["cheat_patches_sklearn_internals"] == summary["scores"]["wrong_micro"] < summary["max_score"]
    plain = grade(F1, klass, tmp_path / "plain", jobs=2, limits=LIMITS, progress=lambda m: None,
                  course=_without_checks(tmp_path))
    assert plain["scores"]["cheat_patches_sklearn_internals"] > plain["scores"]["wrong_micro"], plain["scores"]


# --- plain nbgrader still grades the repository's exercises (hidden tests in the kernel) -------------------------

@pytest.mark.slow
def test_plain_nbgrader_autograde_still_grades_an_exported_course(tmp_path, monkeypatch):
    """What an instructor who uses nbgrader directly runs (autograder/nbgrader_config.py): the hidden tests, edge
    cases included, are nbgrader test cells, so a wrong answer only an edge case catches loses points there too."""
    import subprocess
    import sys

    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    export_course(ROOT, course)
    wrong = variant_answers(next(p for p in variant_files(NF4, ROOT) if p.stem == "wrong_zero_block_divides_by_zero"))
    for student, answers in {"ref": None, "edge": wrong}.items():
        folder = course / "submitted" / student / NF4
        folder.mkdir(parents=True)
        (folder / f"{NF4}.ipynb").write_bytes(dumps(fill(NF4, answers, ROOT)))
    nbgrader = [sys.executable, "-m", "nbgrader"]
    # as in a shell with the environment activated: nbgrader runs its own alembic from the same bin folder
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["generate_assignment", NF4, "--force"], ["autograde", NF4, "--create", "--force"]):
        done = subprocess.run(nbgrader + args, cwd=course / "autograder", env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission(NF4, s).score for s in ("ref", "edge")}
        roundtrip = gb.find_grade("test_roundtrip", NF4, NF4, "edge").score
    assert scores["ref"] == 12 and scores["edge"] < 12 and roundtrip == 0, scores
