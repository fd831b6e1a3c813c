"""The diffable form of an exercise: a Python file of ``# %%`` cells that builds the nbgrader source notebook.

A cell starts with a header line::

    # %% markdown                      instructions (each line written as "# text")
    # %% setup                         the book's setup cell (Colab install + profile), locked
    # %% code id=NAME                  locked, ungraded code (imports, data the tests share)
    # %% answer id=NAME                autograded answer: ### BEGIN SOLUTION ... ### END SOLUTION
    # %% test id=NAME points=N         locked test cell; may hold ### BEGIN HIDDEN TESTS ... ### END HIDDEN TESTS
    # %% written id=NAME points=N      a written answer, graded by hand (markdown)

Reviewing a change to an exercise is then reviewing a Python diff; ``solutions/`` holds the built notebooks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lora_course.errors import GradingSetupError

HEADER = re.compile(r"^# %% (markdown|setup|code|answer|test|written)((?: \w+=\S+)*)\s*$")
KINDS_WITH_ID = {"setup", "code", "answer", "test", "written"}


class SourceFormatError(GradingSetupError):
    """An exercise source (solutions/*.py) that does not follow the cell format."""


def parse_cells(text: str, origin: str = "<source>") -> list[dict]:
    """[{kind, id, points, source}] in file order."""
    cells: list[dict] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = HEADER.match(line)
        if m:
            opts = dict(kv.split("=", 1) for kv in m.group(2).split())
            cells.append({"kind": m.group(1), "id": opts.get("id"), "points": float(opts["points"]) if "points" in opts else None,
                          "lines": [], "line": lineno})
        elif cells:
            cells[-1]["lines"].append(line)
        elif line.strip() and not line.startswith("#!"):
            raise SourceFormatError(f"{origin}:{lineno}: text before the first '# %%' cell header")
    for c in cells:
        lines = c.pop("lines")
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if c["kind"] in ("markdown", "written"):
            bad = [l for l in lines if l and not (l == "#" or l.startswith("# "))]
            if bad:
                raise SourceFormatError(f"{origin}:{c['line']}: markdown lines must start with '# ': {bad[0]!r}")
            lines = [l[2:] if l.startswith("# ") else "" for l in lines]
        c["source"] = "\n".join(lines)
        if c["kind"] in ("test", "written") and not c["points"]:
            raise SourceFormatError(f"{origin}:{c['line']}: a {c['kind']} cell needs points=N")
        if c["kind"] in KINDS_WITH_ID and c["kind"] != "setup" and not c["id"]:
            raise SourceFormatError(f"{origin}:{c['line']}: a {c['kind']} cell needs id=NAME")
    ids = [c["id"] for c in cells if c["id"]]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SourceFormatError(f"{origin}: duplicate cell ids {sorted(dup)}")
    return cells


def _nbgrader(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: float | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def build_notebook(cells: list[dict], setup_source: str) -> dict:
    out = []
    for c in cells:
        kind, src = c["kind"], c["source"]
        meta: dict = {}
        if kind == "setup":
            src = setup_source
            meta = {"nbgrader": _nbgrader("setup", grade=False, solution=False, locked=True)}
        elif kind == "code":
            meta = {"nbgrader": _nbgrader(c["id"], grade=False, solution=False, locked=True)}
        elif kind == "answer":
            meta = {"nbgrader": _nbgrader(c["id"], grade=False, solution=True, locked=False)}
        elif kind == "test":
            meta = {"nbgrader": _nbgrader(c["id"], grade=True, solution=False, locked=True, points=c["points"])}
        elif kind == "written":
            meta = {"nbgrader": _nbgrader(c["id"], grade=True, solution=True, locked=False, points=c["points"])}
        if meta:
            meta["deletable"] = False
            if meta["nbgrader"]["locked"]:
                meta["editable"] = False
        cell_type = "markdown" if kind in ("markdown", "written") else "code"
        cell = {"cell_type": cell_type, "metadata": meta, "source": src.splitlines(keepends=True)}
        if cell_type == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return {
        "cells": out,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def notebook_text(nb: dict) -> str:
    import nbformat

    node = nbformat.from_dict(nb)
    # stable cell ids (nbformat 4.5 requires them): derived from position, so rebuilding gives the same bytes
    for i, cell in enumerate(node.cells):
        cell["id"] = (cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{i}").replace("_", "-")[:64]
    nbformat.validate(node)
    return json.dumps(node, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def build_file(path: Path, setup_source: str) -> str:
    return notebook_text(build_notebook(parse_cells(path.read_text(), str(path)), setup_source))
