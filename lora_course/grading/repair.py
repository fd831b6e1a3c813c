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


TOP_DEF_RE = re.compile(r"^(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", re.M)


def _top_defs(src: str) -> set[str]:
    """The names a cell defines at its top level (functions and classes)."""
    return set(TOP_DEF_RE.findall(src))


def _answer_groups(scells: list[dict], roles: list, rel_by_id: dict, answer_ids: list[str]):
    """Where each student cell that belongs to an answer runs, as the student's notebook would run it.

    A code cell belongs to the answers whose names (the functions and classes the released answer cell defines)
    it defines, whatever its metadata; a cell recognised as an answer (by metadata or content) belongs to that
    answer too. It runs at the slot of the latest of those answers in the released notebook, and never before a
    slot where an earlier student cell defining one of the same names runs: so cells run in the notebook's order
    wherever they define the same thing, the later definition wins, and a released stub (which runs at its own
    slot, before every student definition of its names) never overwrites a student's definition. Cells that are
    (still) the released stub are not run at all. Other code cells the student added (helpers) run at the slot of
    the student cell before them (before the first answer if none).

    Returns (groups: answer id -> indices of the cells that define it, stub_seen: answer id -> index of its last
    untouched stub, placed: cell index -> (answer id of its slot or None, whether it defines an answer))."""
    slot = {aid: k for k, aid in enumerate(answer_ids)}
    names = {aid: _top_defs(text(rel_by_id[aid])) for aid in answer_ids}
    owner = {n: aid for aid in answer_ids for n in names[aid]}
    groups: dict[str, list[int]] = {}
    stub_seen: dict[str, int] = {}
    placed: dict[int, tuple[str | None, bool]] = {}
    last_slot_of_name: dict[str, int] = {}
    current = -1  # slot index the previous placed cell runs at
    for i, (c, (key, how)) in enumerate(zip(scells, roles)):
        src = text(c)
        if not src.strip():
            continue
        code = c.get("cell_type") == "code"
        defs = _top_defs(src) if code or key in slot else set()
        aids = {owner[n] for n in defs if n in owner}
        if key in slot:
            aids.add(key)
        elif key is not None and how != "similar":
            continue  # a locked, test or written cell: those come from the release
        if aids:
            stubs = [a for a in aids if _is_stub(src, text(rel_by_id[a]))]
            if stubs:
                for a in stubs:
                    stub_seen[a] = i
                continue
            k = max([slot[a] for a in aids] + [last_slot_of_name.get(n, -1) for n in defs])
            for n in defs:
                last_slot_of_name[n] = k
            placed[i] = (answer_ids[k], True)
            for a in aids:
                groups.setdefault(a, []).append(i)
            current = k
        elif key is None and code and src.strip():
            placed[i] = (answer_ids[current] if current >= 0 else None, False)
    return groups, stub_seen, placed


def answered(student: dict, release: dict) -> int:
    """How many of the release's answers the student's notebook defines with something other than the stub."""
    rel_by_id = {nbmeta(c)["grade_id"]: c for c in release["cells"] if nbmeta(c).get("grade_id")}
    answer_ids = [g for g, c in rel_by_id.items() if kind(c) == "answer"]
    scells = [c for c in student.get("cells", []) if isinstance(c, dict)]
    groups, _, placed = _answer_groups(scells, _roles(scells, release["cells"]), rel_by_id, answer_ids)
    return sum(1 for aid in answer_ids if any(placed.get(i, (None, False))[1] for i in groups.get(aid, [])))


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

    groups, stub_seen, placed = _answer_groups(scells, roles, rel_by_id, answer_ids)
    chosen: dict[str, int] = {}
    for aid in answer_ids:
        defining = [i for i in groups.get(aid, []) if i in placed and placed[i][1]]
        if not defining:
            if aid not in stub_seen:
                notes.append(f"answer '{aid}' was not found in the notebook: graded as unanswered")
            continue
        names = _top_defs(text(rel_by_id[aid]))
        per_name = {n: sum(n in _top_defs(text(scells[i])) for i in defining) for n in names}
        if len(defining) > 1 and max(per_name.values(), default=0) > 1:
            notes.append(f"answer '{aid}' appears {len(defining)} times: all run in the notebook's order, "
                         "so the last definition counts")
        elif len(defining) > 1:
            notes.append(f"answer '{aid}' is written across {len(defining)} cells: run together, in the notebook's order")
        if aid in stub_seen and stub_seen[aid] < defining[-1]:
            notes.append(f"answer '{aid}': its cell was left as released; the definition written in another cell "
                         "is graded (the released stub is not run)")
        for i in defining:
            if scells[i].get("cell_type") != "code":
                notes.append(f"answer '{aid}' had been turned into a {scells[i].get('cell_type')} cell: graded as code")
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

    # every student cell that defines (part of) an answer, or that the student added (helpers), runs in the
    # notebook's order at the answer slot it belongs to (see _answer_groups); the slot's cell holds the last
    # definition, the others are put before and after it
    n_inserted = sum(1 for i, (_, defines) in placed.items() if not defines)
    if n_inserted:
        notes.append(f"{n_inserted} code cell(s) added by the student kept and run before the tests")
    at_slot: dict[str | None, list[int]] = {}
    for i in sorted(placed):
        at_slot.setdefault(placed[i][0], []).append(i)

    graded = copy.deepcopy(release)
    final, tests = [], []
    for cell in graded["cells"]:
        gid = nbmeta(cell).get("grade_id")
        if gid in chosen:  # written answers
            cell["source"] = text(scells[chosen[gid]])
        if kind(cell) == "test":
            tests.append(cell)
            continue
        if answer_ids and gid == answer_ids[0]:
            final.extend(nbformat.v4.new_code_cell(text(scells[i])) for i in at_slot.pop(None, []))
        if gid in answer_ids and at_slot.get(gid):
            group = at_slot.pop(gid)
            last = max(i for i in group if placed[i][1])
            for i in group:
                if i == last:
                    cell["source"] = text(scells[i])
                    if cell.get("cell_type") != "code":
                        cell.update(cell_type="code", outputs=[], execution_count=None)
                    final.append(cell)
                else:
                    final.append(nbformat.v4.new_code_cell(text(scells[i])))
            continue
        final.append(cell)
    for rest in at_slot.values():
        final.extend(nbformat.v4.new_code_cell(text(scells[i])) for i in rest)
    graded["cells"] = final + tests
    node = nbformat.from_dict(graded)
    for i, cell in enumerate(node.cells):
        cell["id"] = f"c{i}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return Repaired(node, notes)
