"""Limits that hold for a whole submission (all its processes together), a procfs that shows only the sandbox,
and a one-line reason for every way a kernel ends: submissions graded through ``pipeline.grade`` that fork
children which together pass the memory total, fork-bomb, fill the disk across many files (some deleted while
held open), ignore the interrupt, sleep past the cell limit, exit and crash."""

from __future__ import annotations

import csv
import html
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_course.grading.pipeline import Limits, grade
from lora_course.grading.sandbox_limits import reason_from_status
from lora_course.grading.synthetic import (
    NB,
    A,
    _correct,
    _insert_after_answer,
    _with_answer,
)
from lora_course.grading.variants import dumps

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")
# small enough that the submissions below pass them quickly, large enough for a correct notebook with torch
LIMITS = Limits(cell_timeout=10, notebook_timeout=150, memory_mb=3072, processes=200, disk_mb=200)

FORKS_MEMORY = '''
import os, time
ready_r, ready_w = os.pipe()
for _ in range(4):  # each child stays far under the per-process limit; together they pass the total
    if os.fork() == 0:
        block = b"x" * (800 << 20)  # 800 MiB, every page written
        os.write(ready_w, b"1")
        time.sleep(60)
        os._exit(0)
got = b""
while len(got) < 4:  # all four hold their block now (however loaded the machine)
    got += os.read(ready_r, 4)
time.sleep(5)
'''
FORK_BOMB = '''
import os, time
for _ in range(5000):
    try:
        os.fork()
    except OSError as e:
        open(f"failed-{os.getpid()}", "w").write(repr(e))
        time.sleep(0.01)
'''
FILLS_DISK = '''
import os
held = []
for i in range(60):  # 600 MiB in 10 MiB files, every other one deleted while still open
    f = open(f"out-{i}.bin", "wb")
    f.write(os.urandom(1 << 20) * 10)
    f.flush()
    if i % 2:
        os.unlink(f.name)
        held.append(f)
    else:
        f.close()
'''
IGNORES_SIGINT = '''
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    pass
'''
SLOW_CELL = "import time\ntime.sleep(600)\n"
EXITS = "import os\nos._exit(3)\n"
SEGFAULTS = "import ctypes\nctypes.string_at(0)\n"

# student -> (the extra cell, the score it must get, the words its one-line reason must have)
CASES = {
    "forks_memory": (FORKS_MEMORY, 0.0, "memory limit: the submission's"),
    "fork_bomb": (FORK_BOMB, 0.0, "process limit: the submission ran"),
    "fills_disk": (FILLS_DISK, 0.0, "disk limit: the submission wrote"),
    "ignores_sigint": (IGNORES_SIGINT, 0.0, "ignored the interrupt (SIGINT); the kernel was stopped"),
    "sleeps_past_cell_limit": (SLOW_CELL, 8.0, "ran past the cell time limit of 10 s and was interrupted"),
    "exits": (EXITS, 0.0, "the kernel exited with status 3"),
    "segfaults": (SEGFAULTS, 0.0, "the kernel crashed: SIGSEGV"),
}


@pytest.mark.skipif(not LINUX, reason="the totals are held by the relay of the Linux sandbox (namespaces)")
def test_every_ending_is_stopped_at_its_limit_and_reported_in_one_line(tmp_path):
    folder = tmp_path / "class"
    correct = _with_answer(_correct())
    for student, (cell, _, _) in CASES.items():
        (folder / student).mkdir(parents=True)
        (folder / student / NB).write_bytes(dumps(_insert_after_answer(correct, cell)))
    (folder / "correct").mkdir()
    (folder / "correct" / NB).write_bytes(dumps(correct))
    out = tmp_path / "out"
    start = time.monotonic()
    summary = grade(A, folder, out, jobs=2, limits=LIMITS, progress=lambda m: None)
    took = time.monotonic() - start
    if "none:" in summary["sandbox"].get("isolation", "none:"):
        pytest.skip("this machine does not allow user namespaces: " + str(summary["sandbox"].get("isolation")))
    rows = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert summary["scores"]["correct"] == 8.0, rows["correct"]
    for student, (_, score, words) in CASES.items():
        row = rows[student]
        assert row["status"] == "graded", f"{student}: {row['notes_or_error']}"
        assert float(row["score"]) == score, f"{student}: {row['score']} ({row['notes_or_error']})"
        reason = next((n for n in row["notes_or_error"].split(" | ") if words in n), None)
        assert reason, f"{student}: no reason with {words!r} in {row['notes_or_error']!r}"
        assert "\n" not in reason and len(reason) < 400
        assert reason in html.unescape((out / "feedback" / f"{student}.html").read_text()), f"{student}: not in the feedback"
    # the limits held at the totals, not at some later point: the relay's numbers in the reasons
    memory = next(n for n in rows["forks_memory"]["notes_or_error"].split(" | ") if "memory limit" in n)
    used = int(memory.split(" used ")[1].split(" MiB")[0])
    assert LIMITS.memory_mb < used < LIMITS.memory_mb + 1024, memory
    disk = next(n for n in rows["fills_disk"]["notes_or_error"].split(" | ") if "disk limit" in n)
    written = int(disk.split(" wrote ")[1].split(" MiB")[0])
    assert LIMITS.disk_mb < written < LIMITS.disk_mb + 300, disk
    sandbox = summary["sandbox"]
    assert sandbox["limits"]["processes"] == LIMITS.processes and sandbox["memory"] and sandbox["disk"]
    assert sandbox["procfs"].startswith("fresh"), sandbox["procfs"]
    print(f"\n{len(CASES) + 1} submissions graded in {took:.0f} s; sandbox: {json.dumps(sandbox, indent=1)}")


PROC_PROBE = r'''
import json, os, sys
os.environ["LORA_COURSE_SANDBOX_DIR"] = sys.argv[1]
from lora_course.grading.sandbox_kernel import confine
report = confine()
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
cmdlines = []
for p in pids:
    try:
        cmdlines.append(open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace"))
    except OSError:
        pass
print(json.dumps({"report": report, "pids": pids, "cmdlines": cmdlines}))
'''


@pytest.mark.skipif(not LINUX, reason="PID namespaces are Linux only")
def test_proc_lists_only_the_sandbox_processes(tmp_path):
    marker = "instructor-secret-command-line-7d3f"
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        own = tmp_path / "own"
        own.mkdir()
        proc = subprocess.run([sys.executable, "-c", PROC_PROBE, str(own)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120, check=False)
    finally:
        outside.kill()
        outside.wait()
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if "none:" in out["report"]["isolation"]:
        pytest.skip("this machine does not allow user namespaces: " + out["report"]["isolation"])
    assert out["report"]["procfs"].startswith("fresh"), out["report"]["procfs"]
    assert out["pids"] == [1], out["pids"]
    assert not any(marker in c for c in out["cmdlines"])
    assert any("PROC_PROBE" in c or "confine" in c for c in out["cmdlines"]), "the kernel itself is listed"


def _status_of(action) -> int:
    pid = os.fork()
    if pid == 0:
        import faulthandler

        faulthandler.disable()  # pytest's would print a traceback for the crash this test causes on purpose
        action()
        os._exit(0)
    return os.waitpid(pid, 0)[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="wait statuses are POSIX")
@pytest.mark.parametrize("action, words", [
    (lambda: os.kill(os.getpid(), signal.SIGKILL), "the kernel was killed: SIGKILL"),
    (lambda: os.kill(os.getpid(), signal.SIGTERM), "the kernel was killed by SIGTERM"),
    (lambda: os.kill(os.getpid(), signal.SIGSEGV), "the kernel crashed: SIGSEGV"),
    (lambda: os._exit(5), "the kernel exited with status 5"),
])
def test_a_kernel_killed_by_a_signal_or_exiting_gets_one_line(action, words):
    reason = reason_from_status(_status_of(action))
    assert words in reason and "\n" not in reason
    assert "memory limit" in reason_from_status(_status_of(lambda: os.kill(os.getpid(), signal.SIGKILL)),
                                                {"memory.oom_kill": 1})


def test_a_memory_total_that_needs_more_than_one_poll_to_read_is_still_reached(monkeypatch):
    """On a loaded machine one poll's time budget may read only one process's memory map: the processes not
    read count with their last reading, and each poll reads on from where the last stopped, so four children
    of 800 MiB pass a 3,072 MiB total within four polls instead of never (each poll reading the same one)."""
    from lora_course.grading import sandbox_limits as sl

    sizes = {f"/proc/{n}": 800 << 10 for n in (11, 12, 13, 14)} | {"/proc/10": 100 << 10}
    monkeypatch.setattr(sl, "_rss_kb", lambda pid: sizes[pid])
    monkeypatch.setattr(sl, "_pss_kb", lambda pid: sizes[pid])
    monkeypatch.setattr(sl, "PSS_BUDGET_S", -1.0)  # the budget is spent after every single read
    known: dict[str, int] = {}
    totals = [sl._pss_total_kb(list(sizes), 3072 << 10, known) for _ in range(5)]
    assert totals[0] == 800 << 10  # one read: a lower bound
    assert totals[-1] > 3072 << 10 and totals == sorted(totals)
    assert next(i for i, t in enumerate(totals) if t > 3072 << 10) <= 3
    # a process that is gone no longer counts
    del sizes["/proc/11"]
    assert sl._pss_total_kb(list(sizes), 3072 << 10, known) == (3 * 800 + 100) << 10
