"""The kernel that runs a student's notebook: ``python -m lora_course.grading.sandbox_kernel -f CONNECTION_FILE``.

Before ipykernel starts (so before any student code), the process confines itself, as far as the platform allows:

* Linux (root or not, where user namespaces are allowed, as on most distributions and CI runners): two nested
  user namespaces with new mount, network and PID namespaces. The grading folders (``LORA_COURSE_SANDBOX_HIDE``:
  the nbgrader course with the hidden tests and the gradebook, the submissions, the output, the course folder:
  all of an exported one, a checkout's solutions/ and autograder/) and the shared temporary folders (/tmp,
  /var/tmp, /dev/shm: other kernels' folders) are covered by empty mounts; every other mount is read-only except
  the kernel's own folder; there is no network (an empty network namespace); the kernel sees no process outside
  its PID namespace, whose fresh procfs lists only the sandbox's processes. The inner user namespace locks those
  mounts, so code in the kernel cannot undo them; the kernel then drops every capability and may make no user
  namespace of its own. The outer process stays outside as the relay and supervisor: it bounds the submission's
  totals (memory, processes, disk: ``sandbox_limits``) and writes the one-line reason the kernel ended.
* Linux without user namespaces (some hardened kernels): resource limits only; the report says so.
* macOS, Windows: resource limits (POSIX) only. See autograder/README.md.
* Everywhere: per-process address space (``LORA_COURSE_SANDBOX_MEMORY_MB``), CPU seconds and file size limits.

The kernel talks to the grader over IPC sockets in its own folder (TCP would need the network it no longer has).
It then snapshots the functions tests compare with (``guard``) and becomes an ordinary IPython kernel.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from dataclasses import asdict

from lora_course.grading.sandbox_limits import (
    DISK_EVERY,
    ENDING_ENV,
    POLL_S,
    SubmissionLimits,
    join_cgroup,
    limit_pid_namespace,
    limit_process_count,
    make_cgroup,
    remove_cgroup,
    supervise,
    write_file,
)

KERNEL_NICE = 5
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
# shared scratch space: other kernels' folders (their connection files) and anything else students leave there
SHARED_TMP = ["/tmp", "/var/tmp", "/dev/shm"]
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _limits(report: dict) -> None:
    """Per-process limits (the totals are the relay's: sandbox_limits). No file may be larger than the disk
    total, so a single write cannot pass it by more than a file."""
    import resource

    limits = SubmissionLimits.from_environment()
    mem = limits.memory_mb
    if mem:
        resource.setrlimit(resource.RLIMIT_AS, (mem << 20, mem << 20))
    cpu = int(os.environ.get("LORA_COURSE_SANDBOX_CPU_S", "0") or 0)
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    fsize = min(256, limits.disk_mb or 256) << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    report["limits"] = {"memory_mb": mem, "cpu_s": cpu, "file_mb": fsize >> 20, "processes": limits.processes,
                        "disk_mb": limits.disk_mb}


def _enter_user_namespace(libc, flags: int, uid: int, gid: int) -> bool:
    """unshare a user namespace (plus ``flags``) in which we keep our own uid and gid."""
    if libc.unshare(CLONE_NEWUSER | flags) != 0:
        return False
    try:
        write_file("/proc/self/setgroups", "deny")
    except OSError:
        pass
    write_file("/proc/self/uid_map", f"{uid} {uid} 1")
    write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    return True


def _mountpoints() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if not mp.startswith(("/proc", "/sys", "/dev")):
                points.append(mp)
    return sorted(set(points), key=len)


def _mount(libc, src, target, fstype, flags, data=None) -> bool:
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    return libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) == 0


def _linux_namespaces(libc, report: dict, workdir: str | None, ending_fd: int | None = None) -> None:
    """Two nested user namespaces. In the outer one we own a new mount, network and PID namespace: we cover the
    grading folders with empty read-only mounts, make every other mount read-only except the kernel's own folder,
    and leave no network. The inner one (entered after the fork that makes us PID 1 of the new PID namespace)
    locks those mounts: code in the kernel can neither unmount them nor make them writable, and it sees no
    process outside its namespace to signal or trace."""
    uid, gid = os.geteuid(), os.getegid()
    if not _enter_user_namespace(libc, CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID, uid, gid):
        report["isolation"] = "none: this kernel does not allow user namespaces (resource limits only)"
        return
    _mount(libc, "none", "/", None, MS_REC | MS_PRIVATE)
    keep = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY) if workdir else None
    hidden = _covered_folders()
    # the interpreter and the package may themselves live under /tmp (a fresh clone with its .venv there):
    # hold them open now and bring them back, read-only, once /tmp is covered
    needed = [(p, os.open(p, os.O_RDONLY | os.O_DIRECTORY)) for p in _interpreter_folders(SHARED_TMP)]
    ok_hidden = [p for p in hidden if _mount(libc, "tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")]
    ro = 0
    for mp in _mountpoints():
        if any(mp == h or mp.startswith(h + "/") for h in ok_hidden):
            continue
        if _mount(libc, mp, mp, None, MS_BIND | MS_REC) and _mount(libc, None, mp, None, MS_BIND | MS_REMOUNT | MS_RDONLY):
            ro += 1
    for path, fd in needed:
        os.makedirs(path, exist_ok=True)
        if _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC):
            _mount(libc, None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    for h in hidden:  # grading folders inside what was just brought back are covered again
        if any(h.startswith(path + "/") for path, _ in needed):
            _mount(libc, "tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    writable = False
    if keep is not None:  # our own folder, brought back from under the covers through the descriptor kept above
        os.makedirs(workdir, exist_ok=True)
        writable = _mount(libc, f"/proc/self/fd/{keep}", workdir, None, MS_BIND) and \
            _mount(libc, None, workdir, None, MS_BIND | MS_REMOUNT)
        os.close(keep)
    for h in ok_hidden:
        _mount(libc, None, h, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    report["isolation"] = (f"user+mount+network+pid namespaces; {len(ok_hidden)}/{len(hidden)} folders covered by "
                           f"empty mounts; {ro} mounts read-only; own folder writable: {writable}; no network")
    limits = SubmissionLimits.from_environment()
    cgroup, cgroup_why = make_cgroup(limits) if limits.memory_mb else (None, "no memory limit asked")
    setup_r, setup_w = os.pipe()  # the kernel tells the relay what it could set up, then closes
    go_r, go_w = os.pipe()  # the relay lets the kernel go on once it is in its cgroup
    pid = os.fork()
    if pid:  # the outer process only relays and supervises: jupyter_client signals it, the kernel is our child
        os.close(setup_w)
        os.close(go_r)
        joined = cgroup is not None and join_cgroup(cgroup, pid)
        os.close(go_w)
        _relay(pid, workdir, limits, ending_fd, setup_r, report, cgroup if joined else None,
               cgroup_why if not joined else f"{cgroup_why}, holding the kernel")
    os.close(setup_r)
    os.close(go_w)
    os.read(go_r, 1)  # EOF once the relay has put us in the cgroup (or found none)
    os.close(go_r)
    libc.prctl(1, 9)  # PR_SET_DEATHSIG, SIGKILL: the kernel dies with its relay
    # a little less CPU than its relay, so the relay still gets to count when a fork bomb fills the CPU queue
    os.nice(KERNEL_NICE)
    done = _own_procfs_and_pid_limit(libc, limits)
    # no user namespace may be made inside the kernel's (where code would regain the rights to mount a tmpfs
    # that no limit counts): this namespace may hold only the one entered next
    try:
        write_file("/proc/sys/user/max_user_namespaces", "1")
        done["nested_user_namespaces"] = "refused"
    except OSError as e:
        done["nested_user_namespaces"] = f"allowed ({e.strerror})"
    if done.pop("sys_read_only", None):
        _mount(libc, None, "/proc/sys", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _enter_user_namespace(libc, CLONE_NEWNS, uid, gid)
    if "processes" not in done:
        done["processes"] = limit_process_count(limits) or "the supervisor only (counts every 0.1 s)"
    done["capabilities"] = "dropped" if _drop_capabilities(libc) else "kept (capset failed)"
    os.write(setup_w, json.dumps(done).encode())
    os.close(setup_w)
    report.update(done)


def _relay(pid, workdir, limits, ending_fd, setup_r, report, cgroup, cgroup_why) -> None:
    import signal

    stopping: list = []

    def stop(*_):
        stopping.append(True)
        os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGINT, lambda *a: os.kill(pid, signal.SIGINT))
    signal.signal(signal.SIGTERM, stop)
    chunks = []
    while True:  # the kernel's setup takes a moment; EOF also when it died during it
        try:
            chunk = os.read(setup_r, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
    os.close(setup_r)
    try:
        setup = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        setup = {}
    mechanisms = {"memory": (cgroup_why if cgroup else
                             f"the supervisor (every {POLL_S} s, proportional set size of the namespace's "
                             "processes) and the address-space limit of each process"),
                  "processes": f"{cgroup_why}; {setup.get('processes', '')}" if cgroup else setup.get("processes", ""),
                  "disk": f"the supervisor (every {POLL_S * DISK_EVERY:.1f} s, the kernel's folder and deleted files "
                          "held open) and the file-size limit of each file",
                  "procfs": setup.get("procfs", ""), "capabilities": setup.get("capabilities", ""),
                  "nested_user_namespaces": setup.get("nested_user_namespaces", ""),
                  "isolation": report.get("isolation", ""), "limits": asdict(limits)}
    status = supervise(pid, workdir, limits, ending_fd, mechanisms, cgroup, stopping)
    remove_cgroup(cgroup)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _own_procfs_and_pid_limit(libc, limits) -> dict:
    """As PID 1 of the new PID namespace, still in the outer user namespace (which owns it): a mount namespace
    of our own with a fresh procfs, which lists only this namespace's processes (not the grader's command line,
    not the other kernels), and the namespace's pid_max. /proc/sys is made read-only by the caller afterwards, so
    code in the kernel cannot raise the limit; the next user namespace locks both mounts."""
    done: dict = {}
    if libc.unshare(CLONE_NEWNS) != 0 or not _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC):
        done["procfs"] = ("the machine's (a fresh one could not be mounted: "
                          f"{os.strerror(ctypes.get_errno())}); the kernel sees every process's command line")
        return done
    done["procfs"] = "fresh, for the kernel's PID namespace"
    held = limit_pid_namespace(limits)
    if held:
        done["processes"] = held + f"; the supervisor stops the kernel at {limits.processes}"
    done["sys_read_only"] = _mount(libc, "/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
    return done


def _drop_capabilities(libc) -> bool:
    """Give up every capability in the kernel's own user namespace: code in the kernel can then make no mount
    (a tmpfs would hold memory no limit counts) and no namespace, and exec regains nothing (no_new_privs)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two words each): none
    ok = libc.capset(header, data) == 0
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    return ok


def _interpreter_folders(shared: list[str]) -> list[str]:
    """The folders under ``shared`` that Python and lora_course are loaded from (outermost only)."""
    import lora_course

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(lora_course.__file__)))
    candidates = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, package_root) if p and os.path.isdir(p)}
    under = sorted(p for p in candidates if any(p.startswith(s.rstrip("/") + "/") for s in shared))
    return [p for p in under if not any(p != q and p.startswith(q + "/") for q in under)]


def _covered_folders() -> list[str]:
    """The folders the sandbox covers with empty mounts: the grading folders and the shared temporary ones."""
    return [p for p in os.environ.get("LORA_COURSE_SANDBOX_HIDE", "").split(os.pathsep) + SHARED_TMP
            if p and os.path.isdir(p)]


def _is_cache_variable(name: str) -> bool:
    return name.endswith(("CACHE_DIR", "CACHE_HOME", "_CACHE")) or name in ("HF_HOME", "TORCH_HOME")


def _move_caches_into(workdir: str, covered: list[str]) -> list[str]:
    """Cache locations the kernel inherits may lie in folders the sandbox covers with empty read-only mounts:
    once torch's inductor has asked for its cache folder in the grader's process, it has set
    TORCHINDUCTOR_CACHE_DIR=/tmp/... in that process's environment, and every kernel started after it would fail on
    its first import that touches the cache.
    Such variables are pointed at a folder of the kernel's own; returns their names."""
    moved = []
    for name, value in list(os.environ.items()):
        if not _is_cache_variable(name) or not os.path.isabs(value):
            continue
        path = os.path.realpath(value)
        inside = lambda root: path == root or path.startswith(root.rstrip("/") + "/")  # noqa: E731
        if inside(os.path.realpath(workdir)) or not any(inside(os.path.realpath(c)) for c in covered):
            continue
        os.environ[name] = os.path.join(workdir, "caches", name.lower())
        os.makedirs(os.environ[name], exist_ok=True)
        moved.append(name)
    return moved


def confine() -> dict:
    report: dict = {"platform": sys.platform}
    workdir = os.environ.get("LORA_COURSE_SANDBOX_DIR")
    if workdir:  # written before anything else, so the grader can always kill the kernel
        write_file(os.path.join(workdir, "kernel.pid"), str(os.getpid()))
    # where the relay writes how the kernel ended: opened now, in the grader's private folder, which the
    # namespaces then hide; only the relay keeps it open
    ending = os.environ.get(ENDING_ENV)
    ending_fd = os.open(ending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600) if ending else None
    if sys.platform.startswith("linux"):
        _linux_namespaces(_libc(), report, workdir, ending_fd)
    else:
        report["isolation"] = "resource limits only on this platform"
    if ending_fd is not None:  # only the relay writes it (the kernel, or a kernel without a relay, must not)
        os.close(ending_fd)
    _limits(report)  # after the namespaces: the relay process needs no limits
    if workdir:
        report["caches_moved"] = _move_caches_into(workdir, _covered_folders())
        os.chdir(workdir)
        os.environ["HOME"] = workdir
        os.environ["TMPDIR"] = workdir
        import tempfile

        tempfile.tempdir = workdir
    os.environ["MPLCONFIGDIR"] = os.getcwd()
    return report


def main() -> None:
    report = confine()
    from lora_course.grading import guard

    guard.install()
    os.environ["LORA_COURSE_SANDBOX_REPORT"] = json.dumps(report)
    for key in [k for k in os.environ if k.startswith("LORA_COURSE_SANDBOX_") and k != "LORA_COURSE_SANDBOX_REPORT"]:
        del os.environ[key]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
