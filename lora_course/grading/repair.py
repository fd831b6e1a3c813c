"""Turn what a student handed in into the notebook nbgrader should grade, and say what was repaired.

The student's file is never trusted for structure. The graded notebook is the *released* notebook (its cells,
nbgrader metadata and locked cells, exactly as nbgrader generated them), into which the student's answers are
put. Answers are found by grade id when the metadata survived and is unambiguous, otherwise by content (the
functions and classes the answer cell must define), whatever the cell's type, position or metadata. Test cells
always come from the source, so edited or deleted tests are restored; cells the student added are kept (they may
define helpers) and run before the tests. All test cells run after every student cell: the hidden tests reach the
kernel only once the student's code has run.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field

import nbformat

from lora_course import errors

STUB_MARKERS = ("raise NotImplementedError()", "YOUR ANSWER HERE")
DEF_RE = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.M)


class SubmissionError(errors.SubmissionError):
    """A submission that cannot be graded: the message is the one line the instructor's report shows."""


@dataclass
class Repaired:
    notebook: nbformat.NotebookNode
    notes: list[str] = field(default_factory=list)


def text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _norm(s: str) -> str:
    return "\n".join(line.rstrip() for line in s.strip().splitlines())


def nbmeta(cell: dict) -> dict:
    meta = cell.get("metadata") or {}
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else {}


def kind(cell: dict) -> str:
    m = nbmeta(cell)
    if m.get("solution") and m.get("grade"):
        return "written"
    if m.get("solution"):
        return "answer"
    if m.get("grade"):
        return "test"
    if m.get("locked"):
        return "locked"
    return "plain"


def load_notebook(data: bytes, name: str) -> dict:
    """Parse and check a submitted file; raise SubmissionError with the cause and the fix."""
    if not name.lower().endswith(".ipynb"):
        raise SubmissionError(f"{name} is not a notebook (.ipynb). Fix: hand in the .ipynb file (File > Download > .ipynb)")
    try:
        nb = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SubmissionError(f"{name} is not text (a binary file named .ipynb). Fix: download the notebook again as .ipynb")
    except json.JSONDecodeError as e:
        raise SubmissionError(f"{name} is not valid JSON (line {e.lineno}: {e.msg}): the file is truncated or was "
                              "edited as text. Fix: download the notebook again from Jupyter/Colab") from None
    if not isinstance(nb, dict) or ("cells" not in nb and "worksheets" not in nb):
        raise SubmissionError(f"{name} is JSON but not a Jupyter notebook (no cells). Fix: hand in the exercise's .ipynb")
    major = nb.get("nbformat")
    if major != 4:
        raise SubmissionError(f"{name} uses notebook format {major} (the course needs format 4). "
                              "Fix: open it in a current Jupyter or Colab and save it again")
    cells = nb.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) and "cell_type" in c for c in cells):
        raise SubmissionError(f"{name} has malformed cells. Fix: download the notebook again from Jupyter/Colab")
    return nb


def fingerprint(release: dict) -> set[str]:
    """What identifies an assignment's notebook whatever happened to it: names its answers define, headings."""
    marks = set()
    for c in release["cells"]:
        if kind(c) == "answer":
            marks |= {f"def:{n}" for n in DEF_RE.findall(text(c))}
        elif c["cell_type"] == "markdown" and text(c).strip().startswith("#"):
            marks.add("h:" + text(c).strip().splitlines()[0].strip())
    return marks


def observed(nb: dict) -> set[str]:
    marks = set()
    for c in nb.get("cells", []):
        t = text(c)
        marks |= {f"def:{n}" for n in DEF_RE.findall(t)}
        for line in t.splitlines():
            if line.strip().startswith("#"):
                marks.add("h:" + line.strip())
    return marks


def match_score(nb: dict, release: dict) -> float:
    fp = fingerprint(release)
    return len(fp & observed(nb)) / max(1, len(fp))


def _is_stub(src: str, stub: str) -> bool:
    return _norm(src) == _norm(stub) or (any(m in src for m in STUB_MARKERS) and len(_norm(src)) <= len(_norm(stub)) + 5)


def _similar(a: str, b: str) -> float:
    import difflib

    return difflib.SequenceMatcher(None, _norm(a), _norm(b), autojunk=False).ratio()


def _roles(scells: list[dict], rel_cells: list[dict]) -> list[tuple[str | None, str]]:
    """For every student cell: (grade id or 'locked:<index>', how it was recognised) or (None, 'inserted')."""
    rel_by_id = {nbmeta(c)["grade_id"]: c for c in rel_cells if nbmeta(c).get("grade_id")}
    answer_defs = {g: set(DEF_RE.findall(text(c))) for g, c in rel_by_id.items() if kind(c) == "answer"}
    fixed = {}  # normalised text of cells the student does not write -> their key
    for i, c in enumerate(rel_cells):
        if kind(c) in ("locked", "test", "plain"):
            fixed.setdefault(_norm(text(c)), nbmeta(c).get("grade_id") or f"locked:{i}")
    similar_pool = [(nbmeta(c).get("grade_id") or f"locked:{i}", text(c)) for i, c in enumerate(rel_cells)
                    if c["cell_type"] == "code" and kind(c) in ("locked", "test")]
    roles = []
    for c in scells:
        src, gid = text(c), nbmeta(c).get("grade_id")
        defs = set(DEF_RE.findall(src))
        if gid in rel_by_id and kind(c) == kind(rel_by_id[gid]) and (gid not in answer_defs or answer_defs[gid] <= defs):
            roles.append((gid, "meta"))
        elif _norm(src) in fixed:
            roles.append((fixed[_norm(src)], "content"))
        elif (aid := next((a for a, d in answer_defs.items() if d and d <= defs), None)) is not None:
            roles.append((aid, "content"))
        elif gid in rel_by_id and kind(rel_by_id[gid]) == "written":
            roles.append((gid, "meta"))
        elif c.get("cell_type") == "code" and similar_pool and src.strip():
            key, score = max(((k, _similar(src, s)) for k, s in similar_pool), key=lambda x: x[1])
            roles.append((key, "similar") if score >= 0.6 else (None, "inserted"))
        else:
            roles.append((None, "inserted"))
    return roles


def repair(student: dict, release: dict) -> Repaired:
    notes: list[str] = []
    rel_cells = release["cells"]
    rel_by_id = {nbmeta(c)["grade_id"]: c for c in rel_cells if nbmeta(c).get("grade_id")}
    answer_ids = [g for g, c in rel_by_id.items() if kind(c) == "answer"]
    written_ids = [g for g, c in rel_by_id.items() if kind(c) == "written"]
    test_ids = [g for g, c in rel_by_id.items() if kind(c) == "test"]
    scells = student["cells"]
    roles = _roles(scells, rel_cells)
    found: dict[str, list[int]] = {}
    for i, (key, _) in enumerate(roles):
        if key:
            found.setdefault(key, []).append(i)

    chosen: dict[str, int] = {}
    for aid in answer_ids:
        cands = found.get(aid, [])
        if not cands:
            notes.append(f"answer '{aid}' was not found in the notebook: graded as unanswered")
            continue
        real = [i for i in cands if not _is_stub(text(scells[i]), text(rel_by_id[aid]))]
        if len(cands) > 1:
            notes.append(f"answer '{aid}' appears {len(cands)} times: graded the last one the student filled in")
        chosen[aid] = (real or cands)[-1]
        if scells[chosen[aid]].get("cell_type") != "code":
            notes.append(f"answer '{aid}' had been turned into a {scells[chosen[aid]].get('cell_type')} cell: graded as code")
    for wid in written_ids:
        cands = found.get(wid, [])
        if not cands:  # by position: the first markdown cell the student wrote after the question
            q = rel_cells.index(rel_by_id[wid]) - 1
            qtext = _norm(text(rel_cells[q]))
            starts = [i for i, c in enumerate(scells) if _norm(text(c)) == qtext]
            if starts:
                cands = [j for j in range(starts[0] + 1, len(scells))
                         if roles[j][0] is None and scells[j].get("cell_type") == "markdown"][:1]
        if cands:
            chosen[wid] = cands[-1]

    for tid in test_ids:
        rel_src = _norm(text(rel_by_id[tid]))
        if not found.get(tid):
            notes.append(f"test cell '{tid}' was deleted: restored from the source")
        elif any(_norm(text(scells[i])) != rel_src for i in found[tid]):
            notes.append(f"test cell '{tid}' was edited: restored from the source")
        elif len(found[tid]) > 1:
            notes.append(f"test cell '{tid}' appears {len(found[tid])} times: run once, from the source")
    by_content = sorted({k for k, how in roles if k in rel_by_id and how != "meta"}
                        - {k for k, how in roles if how == "meta"})
    if by_content:
        notes.append(f"nbgrader metadata missing or changed on {len(by_content)} cell(s) ({', '.join(by_content)}), "
                     "as editors such as Colab do: matched to the source by content and restored")
    order = [k for k, _ in roles if k in rel_by_id and kind(rel_by_id[k]) in ("answer", "test")]
    expected = [g for g in rel_by_id if g in order]
    if list(dict.fromkeys(order)) != expected:
        notes.append("cells were moved: graded in the source's order")

    # cells the student added (helpers) are kept in their order, after the answer they followed
    chosen_at = {i: g for g, i in chosen.items()}
    inserted: dict[str | None, list] = {}
    last_answer = None
    for i, c in enumerate(scells):
        if chosen_at.get(i) in answer_ids:
            last_answer = chosen_at[i]
        elif roles[i] == (None, "inserted") and c.get("cell_type") == "code" and text(c).strip():
            inserted.setdefault(last_answer, []).append(nbformat.v4.new_code_cell(text(c)))
    n_inserted = sum(len(v) for v in inserted.values())
    if n_inserted:
        notes.append(f"{n_inserted} code cell(s) added by the student kept and run before the tests")

    graded = copy.deepcopy(release)
    final, tests = [], []
    for cell in graded["cells"]:
        gid = nbmeta(cell).get("grade_id")
        if gid in chosen:
            cell["source"] = text(scells[chosen[gid]])
        if kind(cell) == "test":
            tests.append(cell)
            continue
        if answer_ids and gid == answer_ids[0]:
            final.extend(inserted.pop(None, []))
        final.append(cell)
        final.extend(inserted.pop(gid, []) if gid else [])
    for rest in inserted.values():
        final.extend(rest)
    graded["cells"] = final + tests
    node = nbformat.from_dict(graded)
    for i, cell in enumerate(node.cells):
        cell["id"] = f"c{i}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return Repaired(node, notes)
