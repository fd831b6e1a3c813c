"""A synthetic class for exercise 02-lora-layer: every kind of submission instructors receive, each with the
grade it must get (points out of 8, or the error it must be reported with). Used by the end-to-end tests and by
``python -m lora_course.grading.synthetic OUT_DIR`` to measure throughput."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

from lora_course.grading.pipeline import Limits
from lora_course.grading.repair import kind, nbmeta, text
from lora_course.grading.variants import dumps, exercise, fill, solution_answers, variant_answers, variant_files

# The class is graded with these limits. They are generous next to a correct notebook (about 10 s even on a
# loaded machine), so only the submissions built to hit them do: an endless loop, which times out in each of
# the three test cells that call it (3 x 20 s, still inside the notebook limit, so it is graded: 0 points),
# and eight slow cells that each stay under the cell limit but together pass the notebook limit.
CLASS_LIMITS = Limits(cell_timeout=20, notebook_timeout=120, memory_mb=4096)
SLOW_CELL_S = 16

A = "02-lora-layer"
NB = f"{A}.ipynb"


def _answer(nb: dict) -> dict:
    return next(c for c in nb["cells"] if kind(c) == "answer")


def _with_answer(source: str) -> dict:
    return fill(A, {"lora_layer": source})


def _variant(name: str) -> str:
    return next(variant_answers(p) for p in variant_files(A) if p.stem == name)["lora_layer"]


CORRECT = None  # filled lazily: the reference answer


def _correct() -> str:
    return solution_answers(A)["lora_layer"]


def _colab(nb: dict) -> dict:
    """What Colab makes of a notebook: its own cell metadata, nbgrader's gone."""
    nb = copy.deepcopy(nb)
    for i, c in enumerate(nb["cells"]):
        c["metadata"] = {"id": f"colab-{i:04d}"} if c["cell_type"] == "markdown" else {"id": f"colab-{i:04d}", "colab": {"base_uri": "https://localhost:8080/"}}
        c.pop("id", None)
    nb["metadata"] = {"colab": {"provenance": []}, "kernelspec": {"name": "python3", "display_name": "Python 3"}}
    return nb


def _insert_after_answer(nb: dict, *sources: str) -> dict:
    nb = copy.deepcopy(nb)
    i = nb["cells"].index(_answer(nb))
    for k, s in enumerate(sources):
        nb["cells"].insert(i + 1 + k, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s})
    return nb


WRONG = {"wrong_no_scaling": 4, "wrong_bias_added_by_hand": 4, "wrong_random_b": 6, "wrong_zero_a": 4, "wrong_base_not_frozen": 6, "wrong_r_over_alpha": 4}
HOSTILE_READ = '''
import glob, os
found = []
for pattern in ["/tmp/*", "/tmp/*/*", "/tmp/lcg-*/**/*.ipynb", "/tmp/lcg-*/**/gradebook.db", os.path.expanduser("~/*")]:
    found += glob.glob(pattern, recursive=True)
try:
    import lora_course, pathlib
    repo = pathlib.Path(lora_course.__file__).resolve().parents[1]
    found += [str(p) for p in (repo / "solutions").rglob("*.ipynb")]
    found += [str(p) for p in (repo / "autograder").rglob("*")]
except Exception as e:
    found.append(repr(e))
print("I can see:", found)
'''

# everything the kernel could hold of the tests (input history, every calling frame's code, the files Python has
# read, the notebook on disk), base64-encoded so that no line of it is recognisable, raised as the error message
LEAK_ENCODED = """        import base64, inspect, linecache, glob, os
        found = []
        ip = get_ipython()
        found += list(ip.user_ns.get("In", [])) + list(getattr(ip.history_manager, "input_hist_raw", []))
        frame = inspect.currentframe()
        while frame is not None:
            try:
                found.append(inspect.getsource(frame.f_code))
            except (OSError, TypeError):
                pass
            frame = frame.f_back
        for name in list(linecache.cache):
            found.append("".join(linecache.getlines(name)))
        for path in glob.glob(os.path.join(os.getcwd(), "**", "*"), recursive=True):
            try:
                found.append(open(path, errors="replace").read())
            except OSError:
                pass
        raise RuntimeError(base64.b64encode("\\n".join(found).encode()).decode())"""

CHEATS = {
    # the test's own reference layer is in a calling frame when the test runs in the kernel: use it
    "walks_the_stack": """
import sys as _sys
_honest_forward = LoRALayer.forward


def _forward(self, x):
    frame = _sys._getframe(1)
    while frame is not None:
        for name in ("ref", "rf", "reference", "expected"):
            other = frame.f_locals.get(name)
            if isinstance(other, torch.nn.Module) and other is not self:
                try:
                    return other(x)
                except Exception:
                    pass
        frame = frame.f_back
    return _honest_forward(self, x)


LoRALayer.forward = _forward
""",
    # the guard's entry points replaced (they report nothing and restore nothing), then comparisons made to pass
    "replaces_the_guard": """
import json as _json
import lora_course.grading.guard as _guard
_guard.begin_trusted = lambda *a, **k: print(_json.dumps({"restored": []}))
_guard.after_test = lambda *a, **k: print(_json.dumps({"during_test": []}))
_guard.end_trusted = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
""",
    # IPython made to hide every error, so a failing test looks like a passing one
    "patches_the_shell": """
_shell = get_ipython()
type(_shell).showtraceback = lambda *a, **k: None
type(_shell)._showtraceback = lambda *a, **k: None
_shell.InteractiveTB.structured_traceback = lambda *a, **k: []
import IPython.core.interactiveshell as _ish
_ish.ExecutionResult.raise_error = lambda self: None
""",
}


def synthetic_class(folder: Path) -> dict[str, float | tuple[str, str]]:
    """Write the class into ``folder``; return student -> points out of 8, or ("error", text the error must hold)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, float | tuple[str, str]] = {}

    def put(student: str, nb_or_bytes, name: str = NB, expect=8.0, top_level: bool = False):
        data = nb_or_bytes if isinstance(nb_or_bytes, bytes) else dumps(nb_or_bytes)
        path = folder / name if top_level else folder / student / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[student] = expect

    correct = _with_answer(_correct())
    # right, alternative and wrong answers
    put("correct_alice", correct)
    put("correct_bo", correct, name="correct_bo.ipynb", top_level=True)  # files named by student
    for alt in ("alt_einsum", "alt_merged_weight"):
        put(alt, _with_answer(_variant(alt)))
    for wrong, pts in WRONG.items():
        put(wrong, _with_answer(_variant(wrong)), expect=pts)
    put("unanswered", exercise(A), expect=0.0)

    # what editors and students do to notebooks
    put("colab_copy", _colab(correct), name=f"Copy of {NB}")
    tampered = copy.deepcopy(correct)
    for c in tampered["cells"]:
        m = nbmeta(c)
        if m.get("grade"):  # points raised, a test turned into an answer cell, ids renamed
            m.update(points=100, solution=True, grade_id="cell-" + m["grade_id"][::-1])
        elif m.get("solution"):
            m.update(grade=True, points=50)
    put("metadata_changed", tampered)
    put("renamed_by_student", correct, name="lora_layer_JaneDoe_final.ipynb")
    several = copy.deepcopy(exercise(A))
    several["cells"] = several["cells"][:3]
    put("several_notebooks", correct, name="submission.ipynb")
    (folder / "several_notebooks" / "Untitled.ipynb").write_bytes(dumps(several))
    scratch = _with_answer(_variant("wrong_no_scaling"))
    scratch["cells"] = scratch["cells"][:6]  # an abandoned first try
    (folder / "several_notebooks" / "scratch.ipynb").write_bytes(dumps(scratch))
    expected["several_notebooks"] = 8.0
    moved = copy.deepcopy(correct)
    ans = _answer(moved)
    moved["cells"].remove(ans)
    moved["cells"].append(ans)
    put("moved_answer_to_end", moved)
    dup = copy.deepcopy(correct)
    first = copy.deepcopy(_answer(_with_answer(_variant("wrong_no_scaling"))))
    dup["cells"].insert(dup["cells"].index(_answer(dup)), first)  # an older wrong try above the final answer
    put("duplicated_answer_cell", dup)
    md = copy.deepcopy(correct)
    _answer(md).update(cell_type="markdown")
    _answer(md).pop("outputs", None)
    _answer(md).pop("execution_count", None)
    put("answer_turned_markdown", md)
    helper = _with_answer(_correct().replace("nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))", "init_a(self.A)"))
    put("inserted_helper_cell", _insert_after_answer(helper, "def init_a(t):\n    nn.init.kaiming_uniform_(t, a=math.sqrt(5))\n"))
    edited = _with_answer(_variant("wrong_no_scaling"))
    for c in edited["cells"]:
        if kind(c) == "test":
            c["source"] = "# the tests were too strict\npass\n"
    put("edited_tests_wrong_answer", edited, expect=4.0)
    deleted = copy.deepcopy(correct)
    deleted["cells"] = [c for c in deleted["cells"] if kind(c) != "test"]
    put("deleted_tests", deleted)

    # a heavy cell (a training run) is skipped while grading: nbgrader sets NBGRADER_EXECUTION
    put("heavy_cell_skipped_in_grading", _insert_after_answer(correct,
        "import os\nif not os.environ.get('NBGRADER_EXECUTION'):\n    import time\n    time.sleep(3600)  # train for an hour\n"
        "    LoRALayer = None\n"))

    # files that are not what they should be
    put("pdf_only", b"%PDF-1.4 not a notebook", name="report.pdf", expect=("error", "no notebook"))
    put("truncated_json", dumps(correct)[:500], expect=("error", "not valid JSON"))
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}
    put("old_nbformat", json.dumps(v3).encode(), expect=("error", "format 3"))
    put("wrong_assignment", fill("07-merge-unmerge"), name="07-merge-unmerge.ipynb", expect=("error", "07-merge-unmerge"))

    # limits
    put("endless_loop", _with_answer(_correct().replace("return self.base(x)", "while True:\n            pass\n        return self.base(x)")), expect=0.0)
    put("too_slow_overall", _insert_after_answer(correct, *[f"import time\ntime.sleep({SLOW_CELL_S})\n"] * 8),
        expect=("error", "time limit"))
    put("memory_bomb", _with_answer(_correct().replace("return self.base(x)", "hog = [bytearray(1 << 30) for _ in range(64)]\n        return self.base(x)")), expect=0.0)
    put("kernel_killer", _insert_after_answer(correct, "import os\nos._exit(3)\n"), expect=0.0)

    # hostile code
    put("reads_hidden_tests", _insert_after_answer(_with_answer(_variant("wrong_no_scaling")), HOSTILE_READ), expect=4.0)
    put("patches_allclose", _insert_after_answer(_with_answer(_variant("wrong_no_scaling")),
        "import torch\ntorch.allclose = lambda *a, **k: True\ntorch.Tensor.__eq__ = lambda self, other: torch.ones((), dtype=torch.bool)\n"), expect=4.0)
    put("swallows_test_errors", _insert_after_answer(_with_answer(_variant("wrong_zero_a")),
        "def _wrap(lines):\n    return ['try:\\n'] + ['    ' + l for l in lines] + ['\\nexcept BaseException:\\n    pass\\n']\n"
        "get_ipython().input_transformers_post.append(_wrap)\n"), expect=4.0)
    # the hidden checks run outside the kernel: patching torch inside it changes nothing, so the wrong answer gets
    # what wrong_no_scaling gets (in the kernel, the guard used to fail every cell it patched in)
    put("patches_while_tested", _with_answer(_variant("wrong_no_scaling").replace(
        "    def forward(self, x):\n", "    def forward(self, x):\n        torch.allclose = lambda *a, **k: True\n")), expect=4.0)
    put("leaks_tests_through_errors", _with_answer(_correct().replace(
        "        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scaling",
        "        import inspect, linecache\n        caller = inspect.currentframe().f_back\n"
        "        raise RuntimeError(''.join(linecache.getlines(caller.f_code.co_filename)))")), expect=0.0)
    # cheats from inside the kernel: the hidden checks run outside it, so each scores what its wrong answer does
    no_scaling = _with_answer(_variant("wrong_no_scaling"))
    for cheat, code in CHEATS.items():
        put(cheat, _insert_after_answer(no_scaling, code), expect=WRONG["wrong_no_scaling"])
    put("leaks_everything_encoded", _with_answer(_correct().replace(
        "        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scaling", LEAK_ENCODED)), expect=0.0)
    put("network_and_files", _insert_after_answer(correct,
        "import socket\nfor host in [('1.1.1.1', 53), ('127.0.0.1', 22)]:\n    try:\n        socket.create_connection(host, timeout=2)\n        print('connected', host)\n    except OSError as e:\n        print('blocked', host, e)\n"
        "import lora_course, pathlib\nfor target in [pathlib.Path(lora_course.__file__).parent / 'lora' / 'layer.py', pathlib.Path('/tmp/planted.py')]:\n"
        "    try:\n        target.write_text('raise SystemExit')\n    except OSError as e:\n        print('cannot write', target, e)\n"))
    return expected


if __name__ == "__main__":
    import time

    from lora_course.grading.pipeline import grade

    out = Path(sys.argv[1])
    expected = synthetic_class(out / "class")
    t = time.perf_counter()
    summary = grade(A, out / "class", out / "grades", jobs=2, limits=CLASS_LIMITS)
    print(f"{len(expected)} submissions in {time.perf_counter() - t:.0f} s")
