"""The student's side of a hidden check: call the answers on the grader's inputs and hand back plain data.

The grader (``checks.py``, in its own process) writes each check's inputs and the assignment's ``probes.py``
into the kernel's folder before the notebook runs; where the source notebook had a test cell, the graded
notebook has ``probe.run("<grade id>")``. That loads the inputs, calls the probe of that name with the
student's answers, and saves what it returns (tensors, numbers, strings, lists, dicts) as a file the grader
reads with ``torch.load(weights_only=True)``. Nothing here knows an expected value: whatever code in this
process does to this module, the files it leaves can only be compared, outside, with what the reference
solution returned on the same inputs.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

INPUTS = "probe-inputs"
OUTPUTS = "probe-outputs"
PROBES_FILE = "probes.py"
ERROR_KEY = "__error__"
_loaded: dict = {}


def folder() -> Path:
    """The kernel's own folder (the sandbox's), where the grader put the inputs and reads the outputs."""
    return Path(os.environ.get("LORA_COURSE_SANDBOX_DIR") or os.getcwd())


class Answers:
    """The student's names, read from the notebook's namespace when a probe asks (so a name defined late or
    redefined counts as the notebook left it); a missing one is the NameError a test cell would raise."""

    def __init__(self, namespace: dict):
        self._ns = namespace

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._ns[name]
        except KeyError:
            raise NameError(f"name {name!r} is not defined (the exercise asks for it)") from None


def plain(value, depth: int = 0):
    """``value`` as data only: tensors (detached, on the CPU, of the plain Tensor class), numbers, strings,
    None, and lists, tuples and str-keyed dicts of those. Anything else becomes a string naming its type, so it
    compares unequal instead of reaching the grader as an object."""
    import torch

    if depth > 20:
        return "<nested too deeply>"
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone().as_subclass(torch.Tensor)
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, torch.Size):
        return tuple(int(v) for v in value)
    if isinstance(value, bool):  # subclasses of the built-ins (numpy's float64 is a float)
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        return plain(value.item(), depth + 1)
    if isinstance(value, (list, tuple)):
        items = [plain(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if hasattr(value, "__array__"):
        try:
            return torch.as_tensor(value.__array__()).clone()
        except Exception:
            pass
    return f"<object of type {type(value).__name__}>"


def _error_line(error: BaseException, limit: int) -> str:
    """What the student's code raised, as the last line of its traceback (``ValueError: ...``)."""
    return traceback.format_exception_only(type(error), error)[-1].strip()[:limit]


def _probes() -> dict:
    if "probes" not in _loaded:
        path = folder() / INPUTS / PROBES_FILE
        namespace: dict = {"__name__": "lora_course_probes", "__file__": str(path)}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        _loaded["probes"] = namespace
    return _loaded["probes"]


def _save(grade_id: str, data) -> None:
    import torch

    out = folder() / OUTPUTS
    out.mkdir(exist_ok=True)
    tmp = out / f".{grade_id}.tmp"
    torch.save(data, tmp)
    os.replace(tmp, out / f"{grade_id}.pt")


def run(grade_id: str, namespace: dict | None = None) -> None:
    """Run the probe ``grade_id`` on its inputs with the notebook's names and save the result (or the error the
    student's code raised, as text). Prints one line; never raises for a failing answer."""
    import torch

    if namespace is None:
        from IPython import get_ipython

        namespace = get_ipython().user_ns
    try:
        inputs = torch.load(folder() / INPUTS / f"{grade_id}.pt", weights_only=True)
        result = plain(_probes()[grade_id](Answers(namespace), inputs))
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise  # the cell's time limit: nbgrader reports it
        result = {ERROR_KEY: _error_line(e, 600)}
    _save(grade_id, result)
    print(f"check {grade_id}: ran; the grader compares the result with the reference outside this notebook")


def each(cases: dict, call) -> dict:
    """``{name: call(case)}`` with a failing case recorded as its error, so the verdict can say which input broke
    the answer and the other cases are still compared."""
    out = {}
    for name, case in cases.items():
        try:
            out[name] = call(case)
        except Exception as e:
            out[name] = {ERROR_KEY: _error_line(e, 400)}
    return out
