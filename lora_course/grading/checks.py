"""Hidden checks that never enter the student's process: inputs made here, results compared here.

An assignment's folder ``autograder/checks/<assignment>/`` in the course folder holds two files:

* ``probes.py``: one function per checked test cell, named by its grade id, ``def test_x(answers, inputs)``.
  It runs inside the kernel (the student's, and the reference solution's own): it calls the answers
  (``answers.quantize_nf4(...)``) on the inputs and returns plain data, including what a test would look at
  on objects (which parameters require grad, shapes, gradients after a backward). It holds no expected value.
* ``checks.py``: ``make_inputs(generator) -> {grade_id: inputs}`` and, per checked cell, ``def test_x(inputs,
  got, want)``, which raises AssertionError (its message is the student's feedback) unless ``got`` (the
  student's results) is right; ``want`` is what the reference solution returned on the same inputs. It runs
  only in the grader.

The grader draws a seed at grading time, makes the inputs, writes them and ``probes.py`` into each kernel's
folder, and grades a notebook whose checked test cells call ``probe.run(grade_id)`` instead (``probe.py``).
The reference solution goes through the same path first, in a kernel of its own. The verdict is this module's,
in the grader's process: nothing a submission does inside its kernel (replacing the guard, patching IPython or
a library's internals, walking the stack into a test's frame) reaches the expected values or the comparison.
Test cells without a check here (an instructor's own, for instance) still run inside the kernel, under the
guard, and the summary lists them as such.
"""

from __future__ import annotations

import ast
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lora_course.errors import GradingSetupError
from lora_course.grading import probe

CHECKS_DIR = Path("autograder") / "checks"
MAX_RESULT_BYTES = 64 << 20  # a result bigger than this is not read (a submission could fill the disk with it)


@dataclass
class Checks:
    assignment: str
    folder: Path
    probes_source: str
    verdicts: dict = field(default_factory=dict)  # grade id -> test_x(inputs, got, want)
    make_inputs: object = None

    @property
    def grade_ids(self) -> list[str]:
        return list(self.verdicts)


def probe_cell(grade_id: str) -> str:
    """What replaces a checked test cell in the notebook the kernel runs."""
    return ("# Checked by the grader outside this notebook: this cell hands it the answers' results.\n"
            f"__import__('lora_course.grading.probe').grading.probe.run({grade_id!r})\n")


def grade_ids_of_tests(source_nb: dict) -> list[str]:
    ids = []
    for cell in source_nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution") and cell["cell_type"] == "code":
            ids.append(meta["grade_id"])
    return ids


def load(root: Path, assignment: str, source_nb: dict) -> Checks | None:
    """The assignment's checks from the course folder ``root``, or None when it has none (then every test cell
    runs in the kernel, as plain nbgrader runs it). A probe or verdict without the other, or one named after no
    test cell, is a setup error: a typo there would silently leave a cell to the weaker in-kernel path."""
    folder = root / CHECKS_DIR / assignment
    if not folder.is_dir():
        return None
    fix = f"Fix: autograder/checks/{assignment}/ needs probes.py and checks.py with a function per checked test cell"
    try:
        probes_source = (folder / "probes.py").read_text()
        checks_source = (folder / "checks.py").read_text()
    except OSError as e:
        raise GradingSetupError(f"cannot read the checks of {assignment}: {e}. {fix}") from e
    probe_names = {n.name for n in ast.parse(probes_source).body if isinstance(n, ast.FunctionDef)}
    namespace: dict = {"__name__": f"lora_course_checks_{assignment.replace('-', '_')}",
                       "__file__": str(folder / "checks.py")}
    exec(compile(checks_source, str(folder / "checks.py"), "exec"), namespace)
    if not callable(namespace.get("make_inputs")):
        raise GradingSetupError(f"autograder/checks/{assignment}/checks.py has no make_inputs(generator). {fix}")
    tests = grade_ids_of_tests(source_nb)
    verdicts = {name: namespace[name] for name in tests if callable(namespace.get(name))}
    stray = sorted(n for n in (set(probe_names) | {k for k, v in namespace.items() if k.startswith("test_")
                                                   and callable(v)}) - set(tests) if n.startswith("test_"))
    if stray:
        raise GradingSetupError(f"autograder/checks/{assignment} names {', '.join(stray)}, which are not test cells "
                                f"of solutions/{assignment}/{assignment}.ipynb (test cells: {', '.join(tests)}). {fix}")
    missing = sorted(set(verdicts) - probe_names) + sorted(
        n for n in probe_names & set(tests) if n not in verdicts)
    if missing:
        raise GradingSetupError(f"autograder/checks/{assignment}: {', '.join(missing)} has a probe or a verdict but "
                                f"not both. {fix}")
    return Checks(assignment, folder, probes_source, verdicts, namespace["make_inputs"])


def make_inputs(checks: Checks, seed: int) -> dict:
    import torch

    inputs = checks.make_inputs(torch.Generator().manual_seed(seed))
    absent = [g for g in checks.grade_ids if g not in inputs]
    if absent:
        raise GradingSetupError(f"autograder/checks/{checks.assignment}/checks.py: make_inputs gives no inputs for "
                                f"{', '.join(absent)}. Fix: return an entry (an empty dict if it needs none) per check")
    return inputs


def write_inputs(checks: Checks, inputs: dict, sandbox: Path) -> None:
    """Put the probes and their inputs into a kernel's folder (before the kernel starts)."""
    import torch

    folder = Path(sandbox) / probe.INPUTS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / probe.PROBES_FILE).write_text(checks.probes_source)
    for grade_id in checks.grade_ids:
        torch.save(inputs[grade_id], folder / f"{grade_id}.pt")


def read_result(sandbox: Path, grade_id: str):
    """What the kernel left for ``grade_id``, read as data only (``weights_only``: tensors, numbers, strings and
    containers; no object of the submission's can be built here), or ``{ERROR_KEY: why}``. Links, devices, pipes
    and oversized files are refused: the kernel owned that folder."""
    import torch

    name = f"{grade_id}.pt"
    try:
        dir_fd = os.open(Path(sandbox) / probe.OUTPUTS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return {probe.ERROR_KEY: "the notebook left no result for this check (it did not get that far: see the "
                                 "notes for a time limit or a kernel that died)"}
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return {probe.ERROR_KEY: "the notebook left no result for this check (it did not get that far, or the "
                                 "check's cell was stopped: see the notes)"}
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RESULT_BYTES:
            return {probe.ERROR_KEY: "the check's result is not a regular file of a sane size"}
        data = f.read(MAX_RESULT_BYTES + 1)
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as e:
        return {probe.ERROR_KEY: f"the check's result is not plain data ({type(e).__name__}); return tensors, "
                                 "numbers, lists or dicts"}


def error_of(result) -> str | None:
    return result.get(probe.ERROR_KEY) if isinstance(result, dict) else None


def verdict(checks: Checks, grade_id: str, inputs, got, want) -> str | None:
    """None when ``got`` passes, else the one message the student sees."""
    err = error_of(got)
    if err is not None:
        return err
    try:
        checks.verdicts[grade_id](inputs, got, want)
    except AssertionError as e:
        return str(e) or "the result differs from the expected one"
    except Exception as e:
        return f"the result could not be checked ({type(e).__name__}: {str(e)[:200]}): it has the wrong form"
    return None


def check_reference(checks: Checks, inputs: dict, want: dict) -> None:
    """The reference solution's results must exist and pass their own verdicts; otherwise every student would
    be graded against a broken check, so grading stops before the class."""
    for grade_id in checks.grade_ids:
        why = verdict(checks, grade_id, inputs[grade_id], want.get(grade_id, {probe.ERROR_KEY: "no result"}),
                      want.get(grade_id))
        if why is not None:
            raise GradingSetupError(
                f"the reference solution fails the check {grade_id} of {checks.assignment}: {why}. Fix: correct "
                f"autograder/checks/{checks.assignment}/ (or the solution), then check it with "
                f"python -m lora_course.grading.catalog {checks.assignment}")
