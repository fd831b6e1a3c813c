"""The kernel that runs a student's notebook: ``python -m lora_course.grading.sandbox_kernel -f CONNECTION_FILE``.

Before ipykernel starts (so before any student code), the process confines itself, as far as the platform allows:

* Linux (root or not, where user namespaces are allowed, as on most distributions and CI runners): two nested
  user namespaces with new mount, network and PID namespaces. The grading folders (``LORA_COURSE_SANDBOX_HIDE``:
  the nbgrader course with the hidden tests and the gradebook, the submissions, the output, the course folder:
  all of an exported one, a checkout's solutions/ and autograder/) and the shared temporary folders (/tmp,
  /var/tmp, /dev/shm: other kernels' folders) are covered by empty mounts; every other mount is read-only except
  the kernel's own folder; there is no network (an empty network namespace); the kernel sees no process outside
  its PID namespace. The inner user namespace locks those mounts, so code in the kernel cannot undo them.
* Linux without user namespaces (some hardened kernels): resource limits only; the report says so.
* macOS, Windows: resource limits (POSIX) only. See autograder/README.md.
* Everywhere: address space (``LORA_COURSE_SANDBOX_MEMORY_MB``), CPU seconds and file size limits.

The kernel talks to the grader over IPC sockets in its own folder (TCP would need the network it no longer has).
It then snapshots the functions tests compare with (``guard``) and becomes an ordinary IPython kernel.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

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
    import resource

    mem = int(os.environ.get("LORA_COURSE_SANDBOX_MEMORY_MB", "0") or 0)
    if mem:
        resource.setrlimit(resource.RLIMIT_AS, (mem << 20, mem << 20))
    cpu = int(os.environ.get("LORA_COURSE_SANDBOX_CPU_S", "0") or 0)
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))  # no filling the disk
    report["limits"] = {"memory_mb": mem, "cpu_s": cpu}


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_user_namespace(libc, flags: int, uid: int, gid: int) -> bool:
    """unshare a user namespace (plus ``flags``) in which we keep our own uid and gid."""
    if libc.unshare(CLONE_NEWUSER | flags) != 0:
        return False
    try:
        _write("/proc/self/setgroups", "deny")
    except OSError:
        pass
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
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


def _linux_namespaces(libc, report: dict, workdir: str | None) -> None:
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
    pid = os.fork()
    if pid:  # the outer process only relays: jupyter_client signals it, the kernel is our child (PID 1 inside)
        import signal

        signal.signal(signal.SIGINT, lambda *a: os.kill(pid, signal.SIGINT))
        signal.signal(signal.SIGTERM, lambda *a: os.kill(pid, signal.SIGKILL))
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: the kernel dies with its relay
    _enter_user_namespace(libc, CLONE_NEWNS, uid, gid)


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
        _write(os.path.join(workdir, "kernel.pid"), str(os.getpid()))
    if sys.platform.startswith("linux"):
        _linux_namespaces(_libc(), report, workdir)
    else:
        report["isolation"] = "resource limits only on this platform"
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
