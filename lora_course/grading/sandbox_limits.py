"""Limits on a whole submission (all its processes together), and the one-line reason its kernel ended.

A per-process limit does not bound a submission: four forked children each stay under an address-space limit
and hold four times it together; a file-size limit lets a thousand files fill the disk. The sandbox's relay (the
process outside the kernel's PID namespace, ``sandbox_kernel``) therefore bounds the submission's totals, with
the strongest mechanism the machine offers:

* **cgroup v2** (``memory.max`` with no swap, ``pids.max``), where a cgroup v2 folder with the memory and pids
  controllers is delegated to the grader's user (``LORA_COURSE_CGROUP``, or the grader's own cgroup). The
  kernel runs in a child cgroup of its own: a hard limit, enforced by the Linux kernel.
* **the PID namespace's own pid_max** (Linux 6.14 and later): the kernel's PID namespace cannot hold more than
  ``processes + 299`` processes and threads, however fast they fork, root or not; elsewhere ``RLIMIT_NPROC``,
  which holds in the kernel's user namespace for a grader that is not root (the Linux kernel exempts uid 0).
* **the supervisor** (always, and alone where nothing above holds): the relay reads, every ``POLL_S``, the
  processes of the kernel's PID namespace (their memory, proportional set size, so pages shared after a fork
  count once; the number of processes and threads) and the size of the kernel's folder (plus files it holds
  open after deleting them), and stops the whole namespace at the first limit passed. A burst can pass the
  total by what it allocates or writes in one interval; each process stays under the address-space limit and
  each file under the file-size limit meanwhile.

The disk total is watched, not enforced by a size-limited filesystem: a tmpfs mounted in the kernel's mount
namespace would vanish with it, and the grader reads the probes' outputs from the kernel's folder afterwards.

Whatever ends the kernel (a limit, its own exit, a crash, a signal), the relay writes one JSON line to a file the
kernel cannot reach (opened before the namespaces, in the grader's private folder): ``reason`` (one line, for
grades.csv and the feedback) and ``mechanisms`` (which of the above held). ``execute.py`` reads it when the
kernel dies; the pipeline records the mechanisms in summary.json.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from dataclasses import asdict, dataclass

POLL_S = 0.1
DISK_EVERY = 3  # the folder is walked every third poll: a walk costs more than reading /proc
FORKING = 8  # processes more than at the last poll: a fork bomb under way
RESERVED_PIDS = 300  # Linux hands out PIDs below this only before the first wrap-around
ENDING_ENV = "LORA_COURSE_SANDBOX_ENDING"
ENDING_FILE = "kernel-ending.json"  # in the job's private folder


@dataclass
class SubmissionLimits:
    memory_mb: int = 4096  # all the submission's processes together (and each one's address space)
    processes: int = 256  # processes and threads at once
    disk_mb: int = 512  # everything in the kernel's folder, plus deleted files still held open
    files: int = 20000  # entries in the kernel's folder (a million empty files is a disk attack too)

    @classmethod
    def from_environment(cls) -> SubmissionLimits:
        get = lambda name, default: int(os.environ.get(f"LORA_COURSE_SANDBOX_{name}", "") or default)
        return cls(get("MEMORY_MB", 0), get("PROCESSES", cls.processes), get("DISK_MB", cls.disk_mb),
                   get("FILES", cls.files))

    def environment(self) -> dict:
        return {f"LORA_COURSE_SANDBOX_{k.upper()}": str(v) for k, v in asdict(self).items()}


# --- the hard limits, where the machine has them --------------------------------------------------------------

def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _cgroup_candidates() -> list[str]:
    out = [os.environ["LORA_COURSE_CGROUP"]] if os.environ.get("LORA_COURSE_CGROUP") else []
    try:
        for line in _read("/proc/self/cgroup").splitlines():
            if line.startswith("0::"):
                out.append("/sys/fs/cgroup" + line[3:].rstrip("/"))
    except OSError:
        pass
    return out


def make_cgroup(limits: SubmissionLimits) -> tuple[str | None, str]:
    """A child cgroup v2 with memory.max, memory.swap.max and pids.max set, and why (or why not)."""
    why = "no cgroup v2 with the memory and pids controllers delegated to this user"
    for base in _cgroup_candidates():
        try:
            if not {"memory", "pids"} <= set(_read(os.path.join(base, "cgroup.subtree_control")).split()):
                continue
            path = os.path.join(base, f"lora-course-{os.getpid()}")
            os.mkdir(path)
        except OSError:
            continue
        try:
            write_file(os.path.join(path, "memory.max"), str(limits.memory_mb << 20))
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                write_file(os.path.join(path, "memory.swap.max"), "0")
            write_file(os.path.join(path, "pids.max"), str(limits.processes))
            return path, f"cgroup v2 {path} (memory.max, pids.max)"
        except OSError as e:
            remove_cgroup(path)
            why = f"cgroup v2 at {base} not usable ({e.strerror})"
    return None, why


def join_cgroup(path: str, pid: int) -> bool:
    try:
        write_file(os.path.join(path, "cgroup.procs"), str(pid))
        return True
    except OSError:
        return False


def remove_cgroup(path: str | None) -> None:
    if path:
        try:
            os.rmdir(path)
        except OSError:
            pass


def _cgroup_events(path: str | None) -> dict:
    events = {}
    for name in ("memory.events", "pids.events"):
        try:
            for line in _read(os.path.join(path, name)).splitlines():
                key, value = line.split()
                events[f"{name.split('.')[0]}.{key}"] = int(value)
        except (OSError, ValueError, TypeError):
            pass
    return events


def write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def limit_pid_namespace(limits: SubmissionLimits) -> str | None:
    """Run as PID 1 of the new PID namespace, with a fresh procfs mounted: cap the namespace's PIDs. The limit
    leaves ``processes`` PIDs free even after the allocator wraps around (it then skips the reserved low ones).
    Returns the mechanism, or None where this Linux kernel has no pid_max per namespace (before 6.14)."""
    want = limits.processes + RESERVED_PIDS
    try:
        write_file("/proc/sys/kernel/pid_max", str(want))
        if int(_read("/proc/sys/kernel/pid_max")) == want:
            return f"the PID namespace's pid_max ({want - 1} processes and threads at most)"
    except (OSError, ValueError):
        pass
    return None


def limit_process_count(limits: SubmissionLimits) -> str | None:
    """RLIMIT_NPROC, where it holds: it counts a user's processes within the kernel's user namespace, but the
    Linux kernel exempts uid 0 of the machine, so a grader running as root gets nothing from it."""
    import resource

    if os.getuid() == 0 and _outer_uid() == 0:
        return None
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    return f"RLIMIT_NPROC ({limits.processes} in the kernel's user namespace)"


def _outer_uid() -> int:
    """The machine's uid behind our uid 0 in a user namespace (uid_map's second column)."""
    try:
        return int(_read("/proc/self/uid_map").split()[1])
    except (OSError, ValueError, IndexError):
        return os.getuid()


# --- the supervisor -------------------------------------------------------------------------------------------

def _namespace_processes(ns: str) -> list[str]:
    """The /proc folders of the processes in the PID namespace ``ns``, found among all the machine's."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") == ns:
                    pids.append(f"/proc/{entry.name}")
            except OSError:  # gone meanwhile, or not ours to look at
                continue
    return pids


def _threads(proc: str) -> int:
    try:
        return int(_read(f"{proc}/stat").rsplit(")", 1)[1].split()[17])
    except (OSError, ValueError, IndexError):
        return 0


def _rss_kb(proc: str) -> int:
    try:
        return int(_read(f"{proc}/statm").split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def _pss_kb(proc: str) -> int:
    try:
        for line in _read(f"{proc}/smaps_rollup").splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _rss_kb(proc)


PSS_BUDGET_S = 0.2


def _pss_total_kb(pids: list[str], stop_at_kb: int, known: dict[str, int]) -> int:
    """The processes' proportional set sizes added up, largest resident first, until the sum passes
    ``stop_at_kb`` (a breach: no need to read on) or the time budget is spent (each read waits for the process's
    memory map, which a process that keeps forking holds often, and a loaded machine makes every read slow).
    A process not read this time counts with its size at its last reading (``known``, updated here), so a
    total that needs more reads than one poll's budget is still reached within a few polls, not by luck."""
    total, deadline, unread = 0, time.monotonic() + PSS_BUDGET_S, []
    # never read before first (so each poll reads on where the last one stopped), then largest resident first
    ordered = sorted(pids, key=lambda pid: (pid in known, -_rss_kb(pid)))
    for i, pid in enumerate(ordered):
        known[pid] = _pss_kb(pid)
        total += known[pid]
        if total > stop_at_kb:
            return total
        if time.monotonic() > deadline:
            unread = ordered[i + 1:]
            break
    for gone in set(known) - set(pids):
        del known[gone]
    return total + sum(known.get(pid, 0) for pid in unread)


def _folder_usage(root: str, max_entries: int, stop_at: int) -> tuple[int, int]:
    """(bytes on disk, entries) under ``root``, without following links; stops early past either limit."""
    used, entries, todo = 0, 0, [root]
    while todo and entries <= max_entries and used <= stop_at:
        try:
            with os.scandir(todo.pop()) as it:
                for e in it:
                    entries += 1
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    used += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        todo.append(e.path)
        except OSError:
            continue
    return used, entries


def _held_deleted_files(procs: list[str]) -> int:
    """Bytes of files the processes hold open with no name left (written, then deleted; memfd): invisible to a
    walk of the folder, but on disk or in memory all the same."""
    seen, used = set(), 0
    for proc in procs:
        try:
            fds = os.listdir(f"{proc}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{proc}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 0 and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                used += st.st_blocks * 512
    return used


class Supervisor:
    """Watches one kernel (PID 1 of its namespace, our child) and stops it at the first total passed.

    Counting processes is cheap and comes first. Measuring memory exactly reads each process's memory map,
    which waits while that process forks; so while the count grows fast (a fork bomb on its way to the process
    limit), memory and disk wait for the next poll. A slower start is measured at every poll. The relay cannot hand the measuring to a thread: a process
    that made a new PID namespace for its children may not start threads."""

    def __init__(self, child: int, workdir: str | None, limits: SubmissionLimits):
        self.child, self.workdir, self.limits = child, workdir, limits
        self.ns = os.readlink(f"/proc/{child}/ns/pid")
        self.polls = 0
        self.last_count = 0
        self.pss_known: dict[str, int] = {}  # /proc folder -> its PSS (KiB) at its last reading
        self.peak = {"memory_mb": 0, "processes": 0, "disk_mb": 0}

    def _processes(self) -> list[str]:
        """The /proc folders of the namespace's processes. Through the kernel's own procfs (reached through its
        root) that is one listing however many processes the machine runs, which matters when a fork bomb
        leaves us little CPU; the machine's /proc is searched only where the kernel has no procfs of its own."""
        inside = f"/proc/{self.child}/root/proc"
        try:
            return [f"{inside}/{p}" for p in os.listdir(inside) if p.isdigit()]
        except OSError:
            return _namespace_processes(self.ns)

    def breach(self) -> str | None:
        lim = self.limits
        pids = self._processes()
        # past the limit in processes alone: no need to read each one's threads (a fork bomb is still forking)
        tasks = len(pids) if len(pids) >= lim.processes else sum(_threads(p) for p in pids)
        self.peak["processes"] = max(self.peak["processes"], tasks)
        if tasks >= lim.processes:
            return (f"process limit: the submission ran {tasks} processes and threads at once, the limit is "
                    f"{lim.processes} (a fork bomb, or a pool started in a loop); the kernel was stopped")
        forking, self.last_count = len(pids) >= self.last_count + FORKING, len(pids)
        if forking:
            return None
        if lim.memory_mb:
            kb = sum(_rss_kb(p) for p in pids)
            if kb > lim.memory_mb << 10:  # resident counts shared pages in each process: measure exactly
                kb = _pss_total_kb(pids, lim.memory_mb << 10, self.pss_known)
            self.peak["memory_mb"] = max(self.peak["memory_mb"], kb >> 10)
            if kb > lim.memory_mb << 10:
                return (f"memory limit: the submission's {len(pids)} process(es) used {-(-kb >> 10)} MiB together, the "
                        f"limit is {lim.memory_mb} MiB; the kernel was stopped")
        self.polls += 1
        if self.workdir and lim.disk_mb and self.polls % DISK_EVERY == 1:
            used, entries = _folder_usage(self.workdir, lim.files, lim.disk_mb << 20)
            used += _held_deleted_files(pids)
            self.peak["disk_mb"] = max(self.peak["disk_mb"], used >> 20)
            if used > lim.disk_mb << 20:
                return (f"disk limit: the submission wrote {-(-used >> 20)} MiB (its folder and deleted files it held "
                        f"open), the limit is {lim.disk_mb} MiB; the kernel was stopped")
            if entries > lim.files:
                return f"disk limit: the submission made more than {lim.files} files; the kernel was stopped"
        return None


SIGNAL_MEANING = {signal.SIGSEGV: "a segmentation fault (a crash in native code, or ctypes)",
                  signal.SIGABRT: "an abort (a failed check in native code)", signal.SIGBUS: "a bus error",
                  signal.SIGFPE: "an arithmetic fault in native code", signal.SIGILL: "an illegal instruction",
                  signal.SIGKILL: "SIGKILL (sent by code in the notebook, or the system's out-of-memory killer)"}


def reason_from_status(status: int, cgroup_events: dict | None = None) -> str:
    """One line for an ending the supervisor did not cause, from the kernel's wait status."""
    events = cgroup_events or {}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL and events.get("memory.oom_kill"):
            return "memory limit: the submission passed its cgroup's memory.max and was killed"
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        what = SIGNAL_MEANING.get(sig, name)
        crash = sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL)
        return f"the kernel {'crashed' if crash else 'was killed'}: {name}, {what}" if sig in SIGNAL_MEANING \
            else f"the kernel was killed by {name}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return f"the kernel exited with status {code} (os._exit, or exit() from code in the notebook)"


def supervise(child: int, workdir: str | None, limits: SubmissionLimits, ending_fd: int | None,
              mechanisms: dict, cgroup: str | None = None, stopping: list | None = None) -> int:
    """Wait for the kernel (our child), stopping it at the first total passed; write the ending; return its
    wait status. ``stopping``: set by the relay's SIGTERM handler when the grader itself ends the kernel."""
    try:
        watch = Supervisor(child, workdir, limits)
    except OSError:
        watch = None
    reason = None
    while True:
        try:
            pid, status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            pid, status = child, 0
        if pid:
            break
        if watch is not None and reason is None:
            reason = watch.breach()
            if reason:
                # written first: tearing down hundreds of forked processes can take seconds, and the grader may
                # meanwhile see the cell time out and look for why
                _write_ending(ending_fd, reason, None, mechanisms, watch.peak)
                os.kill(child, signal.SIGKILL)  # PID 1 of the namespace: everything in it dies with it
                _, status = os.waitpid(child, 0)
                return status
        time.sleep(POLL_S)
    if reason is None:
        reason = ("stopped by the grader (the notebook was done, or its time limit passed)" if stopping
                  else reason_from_status(status, _cgroup_events(cgroup)))
    _write_ending(ending_fd, reason, status, mechanisms, watch.peak if watch else {})
    return status


def _write_ending(fd: int | None, reason: str, status: int | None, mechanisms: dict, peak: dict) -> None:
    if fd is not None:
        record = {"reason": reason, "status": status, "mechanisms": mechanisms, "peak": peak}
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
        except OSError:
            pass


def read_ending(path: str | os.PathLike | None, wait_s: float = 3.0) -> dict:
    """The ending the relay wrote (empty if none): waits a little, since the grader may notice the kernel's
    death before the relay has written why."""
    if not path:
        return {}
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = _read(os.fspath(path)).strip()
            if text:
                return json.loads(text.splitlines()[-1])
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.05)
