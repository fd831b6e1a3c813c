"""``grade(assignment, submissions, out_dir)``: a class's submissions in, grades CSV, feedback and a summary out.

1. the course folder is found (``course.course_root``: ``--course``, LORA_COURSE_REPO, the current folder, the
   checkout) and a clean nbgrader course is built from its ``solutions/`` in a private temporary folder
   (course.make_course);
2. each submission is read (never modified), its notebook found by content, checked and repaired (repair.py);
3. the hidden checks that the course folder has outside the kernel (``autograder/checks/<assignment>/``,
   checks.py) get their inputs from a seed drawn now; the reference solution runs them first, in a kernel of
   its own; the notebooks graded have probe cells in place of those test cells;
4. submissions are autograded in parallel, each by a worker process running ``nbgrader autograde`` with the
   sandboxed, guarded kernel, under per-cell, per-notebook and memory limits (worker.py, sandbox_kernel.py);
   the checked cells' results are read back as data and judged here, against the reference's;
5. results go to ``grades.csv``, ``feedback/<student>.html`` (no hidden test source) and ``summary.{json,md}``.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from lora_course.errors import GradingSetupError, SubmissionError
from lora_course.grading import checks as hidden_checks
from lora_course.grading import feedback, repair
from lora_course.grading.course import assignments, course_root, make_course, package_parent
from lora_course.grading.sandbox_limits import ENDING_FILE, read_ending
from lora_course.grading.submissions import Submission, read_class
from lora_course.grading.variants import fill


@dataclass
class Limits:
    cell_timeout: int = 30  # seconds per cell
    notebook_timeout: int = 300  # seconds per submission, everything included
    memory_mb: int = 4096  # all the submission's processes together, and the address space of each
    processes: int = 256  # processes and threads at once
    disk_mb: int = 512  # what the submission writes, all files together


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "unknown time"


def _pick_notebook(sub: Submission, assignment: str, releases: dict[str, dict]) -> tuple[str, dict, list[str]]:
    """(file name, notebook, notes) of the submission's notebook for ``assignment``.

    The notebooks that are this exercise's (by content) are candidates; among them, one with answers filled in
    beats a blank or stub copy, then the most recently modified (zip entry time or file time) wins, then the one
    with more answers. Jupyter's checkpoint copies are never candidates. The first note says which file was
    graded and why, when there was a choice or the name differs from the exercise's."""
    notes, problems, valid = [], [], []
    nbs = {k: v for k, v in sub.files.items() if k.lower().endswith(".ipynb")
           and ".ipynb_checkpoints" not in k.split("/") and not k.lower().endswith("-checkpoint.ipynb")}
    if not nbs:
        names = ", ".join(sorted(sub.files)) or "nothing"
        raise repair.SubmissionError(f"no notebook (.ipynb) in the submission (found: {names}). Fix: hand in the exercise's .ipynb")
    for name, data in sorted(nbs.items()):
        try:
            nb = repair.load_notebook(data, name)
        except repair.SubmissionError as e:
            problems.append(str(e))
            continue
        valid.append((repair.match_score(nb, releases[assignment]), name, nb))
    if not valid:
        raise repair.SubmissionError(problems[0])
    matching = [(name, nb) for score, name, nb in valid if score >= 0.5]
    if not matching:
        name = max(valid, key=lambda v: (v[0], v[1]))[1]
        others = sorted(((repair.match_score(nb2, rel), a, n) for _, n, nb2 in valid for a, rel in releases.items()
                         if a != assignment), reverse=True)
        if others and others[0][0] >= 0.5:
            raise repair.SubmissionError(f"{others[0][2]} is the notebook of exercise {others[0][1]}, not {assignment}. "
                                         f"Fix: hand in {assignment}.ipynb")
        raise repair.SubmissionError(f"{name} does not look like exercise {assignment} (none of its answers or headings "
                                     f"were found). Fix: start from exercises/{assignment}/{assignment}.ipynb")
    cands = [(repair.answered(nb, releases[assignment]), sub.mtimes.get(name, 0.0), repair.match_score(nb, releases[assignment]),
              name, nb) for name, nb in matching]
    pool = [c for c in cands if c[0] > 0] or cands
    newest = max(c[1] for c in pool)
    # times within 2 s are the same time (a zip stores them to 2 s; files copied together share one)
    top = [c for c in pool if c[1] >= newest - 2]
    n_answers, mtime, _, name, nb = max(top, key=lambda c: (c[0], c[2], Path(c[3]).name == f"{assignment}.ipynb", c[3]))
    if len(cands) > 1:
        blank = [c[3] for c in cands if c[0] == 0]
        older = [c for c in pool if c not in top]
        same = [c[3] for c in top if c[3] != name]
        why = []
        if n_answers and blank:
            why.append(f"it has answers filled in, {', '.join(blank)} {'has' if len(blank) == 1 else 'have'} none")
        if not n_answers:
            why.append("none of them has answers filled in")
        if older:
            why.append(f"it is the most recently modified ({_when(mtime)}) of those with answers; older: "
                       + ", ".join(f"{c[3]} ({_when(c[1])})" for c in older))
        if same:
            why.append(f"of those modified at the same time ({', '.join(same)}), it has the most answers and cells "
                       "of the exercise")
        notes.append(f"graded {name}, one of {len(cands)} copies of {assignment}: " + "; ".join(why))
    elif Path(name).name != f"{assignment}.ipynb":
        notes.append(f"graded {name} (matched to {assignment}.ipynb by its content)")
    ignored = sorted(set(nbs) - {name})
    if ignored:
        notes.append(f"{len(ignored)} other file(s) in the submission ignored: {', '.join(ignored)}")
    return name, nb, notes


def _kill_kernel(sandbox: Path) -> None:
    pidfile = sandbox / "kernel.pid"
    if pidfile.is_file():  # the kernel runs in a session of its own; its relay dies here, the kernel with it
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


class WorkerSlot:
    """One long-lived ``worker --serve`` process grading jobs one after another; replaced when a job overruns."""

    def __init__(self, log_dir: Path, index: int):
        self.log = log_dir / f"worker-{index}.log"
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()

    def _start(self) -> None:
        # the worker imports the very package this process runs (a checkout, or an installed wheel), whatever the
        # course folder; it starts in the private folder, so nothing in the current folder shadows it
        env = dict(os.environ, PYTHONPATH=str(package_parent()) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "lora_course.grading.worker", "--serve", str(self.log)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     start_new_session=True, env=env, cwd=str(self.log.parent))
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()

    @staticmethod
    def _read(proc, lines) -> None:
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None

    def run(self, job_path: Path, sandbox: Path, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(f"{job_path}\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        try:
            while True:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
                if line is None:
                    self.proc = None
                    return {"success": False, "error": "the grading worker died without a result"}
                if line == f"DONE {job_path}":
                    break
        except queue.Empty:
            self.stop()
            return {"success": False, "timeout": True,
                    "error": f"grading stopped after the notebook time limit of {int(timeout)} s "
                             "(an endless loop or a very slow cell)"}
        finally:
            _kill_kernel(sandbox)  # nothing may outlive its grading
        result = job_path.parent / "result.json"
        if not result.is_file():
            return {"success": False, "error": "the grading worker finished without a result"}
        return json.loads(result.read_text())


def _summarise_result(res: dict, source_nb: dict) -> dict:
    """Scores per grade cell: a checked cell's from the verdict made here (``res["verdicts"]``: grade id -> None
    or the failure), any other from nbgrader's run in the kernel."""
    tests = []
    verdicts = res.get("verdicts", {})
    for cell in source_nb["cells"]:
        m = repair.nbmeta(cell)
        if not m.get("grade"):
            continue
        g = res.get("grades", {}).get(m["grade_id"], {})
        manual = bool(g.get("manual_needed")) or (m.get("solution") and m.get("grade"))
        score = g.get("auto") or 0.0
        errors = res.get("cells", {}).get(m["grade_id"], {}).get("errors", [])
        if m["grade_id"] in verdicts:
            why = verdicts[m["grade_id"]]
            score = float(m["points"]) if why is None else 0.0
            errors = [] if why is None else [why]
        tests.append({"name": m["grade_id"], "max": float(m["points"]), "score": 0.0 if manual else float(score),
                      "manual": bool(manual), "errors": errors})
    return {"tests": tests, "score": sum(t["score"] for t in tests if not t["manual"]),
            "max_score": sum(t["max"] for t in tests if not t["manual"]),
            "manual_pending": sum(t["max"] for t in tests if t["manual"])}


def _private_folders(root: Path) -> list[str]:
    """What the student's kernel must not see of the course folder: all of it (an exported course), unless the
    kernel loads code from inside it (a checkout holding the package, or a .venv): then its solutions/,
    autograder/, .git and tests/."""
    needed = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, package_parent(), *sys.path)
              if p and Path(p).is_dir()]
    if not any(p == root or root in p.parents for p in needed):
        return [str(root)]
    return [str(root / p) for p in ("solutions", "autograder", ".git", "tests")]


def grade(assignment: str, submissions: str | Path, out_dir: str | Path, *, jobs: int = 2,
          limits: Limits | None = None, progress=None, course: str | Path | None = None,
          seed: int | None = None) -> dict:
    """Grade every submission of ``assignment`` in ``submissions`` into ``out_dir``. ``course``: the course folder
    (``--course``); None looks for one (course.course_root). ``seed``: of the hidden checks' inputs (default: drawn
    now, so no submission can know them in advance; summary.json records it, to grade again identically)."""
    limits = limits or Limits()
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    root = course_root(course)
    known = assignments(root)
    if assignment not in known:
        raise GradingSetupError(f"unknown assignment {assignment!r} in the course folder {root}. "
                                f"Fix: use one of {', '.join(known)}")
    out = Path(out_dir)
    sub_path = Path(submissions).resolve()
    if out.resolve() == sub_path or sub_path in out.resolve().parents:
        raise GradingSetupError("the output folder is inside the submissions. Fix: write the grades somewhere else (--out)")
    klass = read_class(sub_path)
    subs = klass.submissions
    if not subs:
        raise SubmissionError(f"no submissions found in {submissions}. Fix: pass the folder or zip the class handed in")
    progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    progress(f"course folder: {root}")
    t0 = time.perf_counter()
    private = Path(tempfile.mkdtemp(prefix="lcg-"))  # mode 700: course, gradebook, jobs
    sandboxes = Path(tempfile.mkdtemp(prefix="lcg-sbx-"))
    os.chmod(sandboxes, 0o711)
    try:
        source_path = root / "solutions" / assignment / f"{assignment}.ipynb"
        source_text = source_path.read_text()
        source_nb = json.loads(source_text)
        checks = hidden_checks.load(root, assignment, source_nb)
        inputs = hidden_checks.make_inputs(checks, seed) if checks else {}
        template = private / "template"
        make_course(template, assignment, root,
                    replace_tests={g: hidden_checks.probe_cell(g) for g in checks.grade_ids} if checks else None)
        release_nb = json.loads((template / "release" / assignment / f"{assignment}.ipynb").read_text())
        releases = {a: json.loads((root / "exercises" / a / f"{a}.ipynb").read_text())
                    for a in known if (root / "exercises" / a / f"{a}.ipynb").is_file()}
        releases[assignment] = release_nb
        hidden = feedback.hidden_test_lines(source_path)
        guard_packages = sorted({"builtins", "math", "operator", "functools", "collections", "re", "string", "random",
                                 "torch", "numpy", "lora_course"}
                                | {p for p in ("sklearn", "bitsandbytes") if re.search(rf"\b(import|from) {p}\b", source_text)})
        # covered by empty mounts in every kernel (its own folder inside ``sandboxes`` is brought back)
        hide = [str(private), str(sandboxes), str(sub_path), str(out.resolve()), *_private_folders(root)]

        def new_job(sid: str, notebook: dict) -> tuple[Path, Path]:
            work = private / "jobs" / sid
            work.mkdir(parents=True)
            sandbox = Path(tempfile.mkdtemp(prefix=f"{len(pending)}-", dir=sandboxes))
            if checks:
                hidden_checks.write_inputs(checks, inputs, sandbox)
            nb_path = work / "repaired.ipynb"
            nb_path.write_text(json.dumps(notebook))
            job = {"workdir": str(work), "template": str(template), "assignment": assignment, "student": sid,
                   "notebook": str(nb_path), "sandbox": str(sandbox), "memory_mb": limits.memory_mb,
                   "cell_timeout": limits.cell_timeout, "cpu_s": limits.notebook_timeout, "hide": hide,
                   "processes": limits.processes, "disk_mb": limits.disk_mb,
                   "pythonpath": str(package_parent()), "guard_packages": guard_packages}
            (work / "job.json").write_text(json.dumps(job))
            return work / "job.json", sandbox

        results: dict[str, dict] = {}
        sandbox_report: dict | None = None
        pending = []
        ids_seen: dict[str, int] = {}
        for sub in subs:
            sid = sub.student_id
            ids_seen[sid] = ids_seen.get(sid, 0) + 1
            if ids_seen[sid] > 1:
                sid = f"{sid}_{ids_seen[sid]}"
            base = {"student": sub.student, "student_id": sid, "notes": [], "section": sub.section, "lms": sub.lms,
                    "identifier": sub.identifier, "origin": sub.origin}
            try:
                name, nb, notes = _pick_notebook(sub, assignment, releases)
                fixed = repair.repair(nb, release_nb)
            except repair.SubmissionError as e:
                results[sid] = {**base, "status": "error", "error": str(e), "file": ""}
                continue
            results[sid] = {**base, "file": name, "notes": notes + fixed.notes}
            pending.append((sid, *new_job(sid, fixed.notebook)))

        roster = _roster(results, klass)
        for line in roster["lines"]:
            progress(line)
        done = len(results) - len(pending)
        progress(f"grading {len(pending)} notebook(s) of {len(subs)} submission(s), {jobs} at a time"
                 + (f"; {done} could not be graded" if done else ""))
        slots: queue.Queue = queue.Queue()
        all_slots = [WorkerSlot(private, i) for i in range(max(1, jobs))]
        for s in all_slots:
            slots.put(s)
        want: dict = {}
        if checks and pending:
            want = _reference_results(checks, inputs, new_job, all_slots[0], limits,
                                      repair.repair(fill(assignment, root=root, release=release_nb), release_nb).notebook)
            progress(f"hidden checks outside the kernel: {', '.join(checks.grade_ids)} (inputs from seed {seed}); "
                     "the reference solution passes them")

        def run_one(job: Path, sandbox: Path) -> dict:
            slot = slots.get()
            try:
                return slot.run(job, sandbox, limits.notebook_timeout)
            finally:
                slots.put(slot)

        try:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                futures = {pool.submit(run_one, job, sandbox): (sid, job, sandbox) for sid, job, sandbox in pending}
                for i, fut in enumerate(as_completed(futures), 1):
                    sid, job, sandbox = futures[fut]
                    res = fut.result()
                    r = results[sid]
                    # how the kernel's limits were held (the relay's record, outside the kernel's reach)
                    ending = read_ending(job.parent / ENDING_FILE, 0)
                    if sandbox_report is None and ending.get("mechanisms"):
                        sandbox_report = ending["mechanisms"]
                        progress("limits of each submission: " + "; ".join(
                            f"{k} by {sandbox_report[k].split(' (')[0]}" for k in ("memory", "processes", "disk")))
                    if checks and res.get("success"):
                        res["verdicts"] = {g: hidden_checks.verdict(checks, g, inputs[g],
                                                                    hidden_checks.read_result(sandbox, g), want[g])
                                           for g in checks.grade_ids}
                    if res.get("success"):
                        r.update(status="graded", **_summarise_result(res, source_nb))
                        r["notes"].extend(res.get("interrupted", []))
                        if res.get("kernel_died"):
                            r["notes"].append(f"the kernel died: {res['kernel_died']}; later checks scored 0")
                        if res.get("tampering"):
                            r["notes"].append("code changed what the tests compare with ("
                                              + ", ".join(res["tampering"][:6])
                                              + "): undone before the tests ran; a test during which it happened scores 0")
                        progress(f"[{i}/{len(pending)}] {r['student']}: {r['score']:g}/{r['max_score']:g}")
                    else:
                        r.update(status="error", error=res.get("error") or "grading failed")
                        if not res.get("timeout"):
                            r["error"] = "grading failed: " + str(r["error"]).strip().splitlines()[-1][:300]
                        progress(f"[{i}/{len(pending)}] {r['student']}: not graded ({r['error'][:80]})")
        finally:
            for s in all_slots:
                s.stop()
            for _, _, sandbox in pending:
                _kill_kernel(sandbox)
        elapsed = time.perf_counter() - t0
        in_kernel = [g for g in hidden_checks.grade_ids_of_tests(source_nb) if not checks or g not in checks.grade_ids]
        how = {"seed": seed, "outside_kernel": checks.grade_ids if checks else [], "in_kernel": in_kernel}
        return _write_outputs(out, assignment, results, source_nb, hidden, elapsed, jobs, root, roster, how,
                              sandbox_report)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(sandboxes, ignore_errors=True)


def _reference_results(checks, inputs: dict, new_job, slot: WorkerSlot, limits: Limits, notebook: dict) -> dict:
    """The checks' results of the reference solution, run like a submission (same probes, same inputs, a kernel
    of its own); grading stops here if the reference does not pass its own checks."""
    job, sandbox = new_job("__reference__", notebook)
    res = slot.run(job, sandbox, limits.notebook_timeout)
    if not res.get("success"):
        raise GradingSetupError(f"the reference solution could not be run for the hidden checks: "
                                f"{str(res.get('error') or 'unknown error').strip().splitlines()[-1][:300]}. Fix: "
                                f"grade solutions/{checks.assignment} alone to see why")
    want = {g: hidden_checks.read_result(sandbox, g) for g in checks.grade_ids}
    hidden_checks.check_reference(checks, inputs, want)
    return want


ROSTER_LINES = 12


def _roster(results: dict, klass) -> dict:
    """The students as derived from the layout, with the file chosen for each: printed before grading starts (so
    a wrong grouping shows at once) and kept in summary.json."""
    students = [{"student": r["student"], "student_id": r["student_id"], "section": r["section"], "lms": r["lms"],
                 "identifier": r["identifier"], "file": r.get("file", ""),
                 "why": next((n for n in r.get("notes", []) if n.startswith("graded ")), ""),
                 **({"error": r["error"]} if r.get("error") else {})} for r in results.values()]
    lines = [f"{len(students)} student(s) found: {klass.layout}"]
    for st in students[:ROSTER_LINES]:
        where = f"[{st['section']}] " if st["section"] else ""
        lines.append(f"  {where}{st['student']} <- {st['file'] or '(no notebook: ' + st.get('error', '')[:60] + ')'}"
                     + (" (chosen among several)" if st["why"].startswith("graded ") and "copies" in st["why"] else ""))
    if len(students) > ROSTER_LINES:
        lines.append(f"  ... and {len(students) - ROSTER_LINES} more (all in summary.json, \"students\")")
    for w in klass.warnings[:20]:
        lines.append(f"warning: {w}")
    if len(klass.warnings) > 20:
        lines.append(f"warning: ... and {len(klass.warnings) - 20} more (summary.json, \"layout\")")
    return {"layout": klass.layout, "warnings": klass.warnings, "students": students, "lines": lines}


def _write_outputs(out: Path, assignment: str, results: dict, source_nb: dict, hidden: list[str], elapsed: float,
                   jobs: int, course: Path, roster: dict | None = None, how: dict | None = None,
                   sandbox_report: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    tests = [repair.nbmeta(c)["grade_id"] for c in source_nb["cells"] if repair.nbmeta(c).get("grade")]
    rows = [results[k] for k in sorted(results)]
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "status", "score", "max_score", "manual_points_pending", *tests, "file", "notes_or_error"])
        for r in rows:
            per = {t["name"]: ("manual" if t["manual"] else f"{t['score']:g}") for t in r.get("tests", [])}
            w.writerow([r["student"], r["status"], f"{r.get('score', 0):g}", f"{r.get('max_score', 0):g}",
                        f"{r.get('manual_pending', 0):g}", *[per.get(t, "") for t in tests], r.get("file", ""),
                        r.get("error") or " | ".join(r.get("notes", []))])
    for r in rows:
        (out / "feedback" / f"{r['student_id']}.html").write_text(feedback.render(r, assignment, hidden))
    _write_lms(out, rows, hidden)
    graded = [r for r in rows if r["status"] == "graded"]
    max_score = graded[0]["max_score"] if graded else 0
    pass_rates = {}
    for t in tests:
        scored = [x for r in graded for x in r["tests"] if x["name"] == t and not x["manual"]]
        if scored:
            pass_rates[t] = sum(x["score"] == x["max"] for x in scored) / len(scored)
    buckets = {}
    for r in graded:
        frac = r["score"] / r["max_score"] if r["max_score"] else 0
        key = f"{min(int(frac * 10), 9) * 10}-{min(int(frac * 10), 9) * 10 + 10}%"
        buckets[key] = buckets.get(key, 0) + 1
    summary = {
        "assignment": assignment, "course": str(course), "submissions": len(rows), "graded": len(graded),
        "max_score": max_score,
        "scores": {r["student"]: r["score"] for r in graded},
        "distribution": dict(sorted(buckets.items(), key=lambda kv: int(kv[0].split("-")[0]))),
        "mean": (sum(r["score"] for r in graded) / len(graded)) if graded else None,
        "pass_rates": pass_rates,
        "not_graded": {r["student"]: r["error"] for r in rows if r["status"] != "graded"},
        # for the instructor (never shown to students: hidden tests' messages are not scrubbed here)
        "failed_checks": {r["student"]: {t["name"]: "; ".join(t["errors"])[-300:] for t in r["tests"]
                                         if not t["manual"] and t["score"] < t["max"]} for r in graded},
        "repaired": {r["student"]: r["notes"] for r in rows if r.get("notes")},
        "layout": {"found": (roster or {}).get("layout"), "warnings": (roster or {}).get("warnings", [])},
        "students": (roster or {}).get("students", []),
        # how the tests ran: checked outside the kernel (sound) or inside it (under the guard only)
        "checks": how or {},
        # which mechanism held each limit on this machine (sandbox_limits; autograder/README.md, Isolation)
        "sandbox": sandbox_report or {},
        "seconds": round(elapsed, 1), "jobs": jobs,
        "submissions_per_minute": round(len(rows) / elapsed * 60, 2) if elapsed else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = [f"# {assignment}: {len(graded)} of {len(rows)} submissions graded", "",
          f"Mean {summary['mean']:.2f} / {max_score:g}" if graded else "Nothing graded.", "",
          "| score | students |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in summary["distribution"].items()]
    md += ["", "| check | pass rate |", "|---|---|"] + [f"| {k} | {v:.0%} |" for k, v in pass_rates.items()]
    if summary["not_graded"]:
        md += ["", "## Not graded", ""] + [f"- {k}: {v}" for k, v in summary["not_graded"].items()]
    if summary["layout"]["warnings"]:
        md += ["", "## Layout warnings", ""] + [f"- {w}" for w in summary["layout"]["warnings"]]
    if how:
        md += ["", f"Hidden checks outside the students' kernels (inputs from seed {how['seed']}): "
               f"{', '.join(how['outside_kernel']) or 'none'}; inside them, under the guard only: "
               f"{', '.join(how['in_kernel']) or 'none'}."]
    md += ["", f"{len(rows)} submissions in {elapsed:.0f} s with {jobs} worker(s): "
           f"{summary['submissions_per_minute']} submissions/min"]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    return summary


LMS_COLUMNS = ["student", "identifier", "lms", "section", "score", "max_score", "feedback_file", "status"]


def _write_lms(out: Path, rows: list[dict], hidden: list[str]) -> None:
    """``grades-lms.csv``: one row per student, what a Canvas or Moodle grade import needs (autograder/README.md
    maps the columns); ``results/<student>.json``: Gradescope's results format. Neither holds hidden test source:
    messages are scrubbed as in the feedback. A submission that could not be graded has an empty score (an
    import leaves its grade unchanged) and its status says why."""
    (out / "results").mkdir(exist_ok=True)
    graded_max = next((r["max_score"] for r in rows if r["status"] == "graded"), 0)
    with open(out / "grades-lms.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LMS_COLUMNS)
        for r in rows:
            ok = r["status"] == "graded"
            w.writerow([r["student"], r.get("identifier") or r["student"], r.get("lms", ""), r.get("section", ""),
                        f"{r['score']:g}" if ok else "", f"{r.get('max_score', graded_max) if ok else graded_max:g}",
                        f"{r['student_id']}.html", "graded" if ok else "not graded: " + r.get("error", "")[:200]])
    for r in rows:
        tests = [{"name": t["name"], "score": t["score"], "max_score": t["max"],
                  "output": "passed" if t["score"] == t["max"] else
                  feedback.scrub("; ".join(t.get("errors") or []) or "failed", hidden)}
                 for t in r.get("tests", []) if not t["manual"]]  # written answers: graded by hand, not here
        output = (f"Could not be graded: {r.get('error', '')}" if r["status"] != "graded" else
                  f"Autograded {r['score']:g} / {r['max_score']:g}" + (
                      f" (plus {r['manual_pending']:g} point(s) of written answers graded by hand)"
                      if r.get("manual_pending") else ""))
        if r.get("notes"):
            output += "\n" + "\n".join(f"- {n}" for n in r["notes"])
        result = {"score": r.get("score", 0.0) if r["status"] == "graded" else 0.0,
                  "max_score": r.get("max_score", graded_max) if r["status"] == "graded" else graded_max,
                  "tests": tests, "output": feedback.scrub(output, hidden, limit=4000)}
        (out / "results" / f"{r['student_id']}.json").write_text(json.dumps(result, indent=1) + "\n")
