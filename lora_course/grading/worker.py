"""Grade one prepared submission in a process of its own: ``python -m lora_course.grading.worker JOB.json``.

The job names a template course directory (``course.make_course``), the repaired notebook and the limits.
The worker copies the course, runs ``nbgrader autograde`` with the sandboxed, guarded kernel, and writes
``result.json`` beside the job: the score of every grade cell, the outputs that feedback may show, what the
sandbox did. The parent kills the worker and its kernel when the per-notebook time limit passes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


# what the kernel keeps of the grader's environment: nothing that could hold a secret (tokens, keys, passwords,
# proxies with credentials); everything else it needs is set explicitly in kernel_environment
KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "SYSTEMROOT")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


def kernel_environment(job: dict, base: dict | None = None) -> dict:
    """The student kernel's entire environment: a few variables of the grader's (KEPT, and the cache locations,
    absolute paths, that the sandbox may move into the kernel's folder), a HOME and TMPDIR of its own, the
    PYTHONPATH that finds lora_course, one thread per library, and the sandbox's settings. Nothing else of the
    instructor's shell reaches code being graded (HF_TOKEN, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, ...)."""
    from lora_course.grading.sandbox_kernel import _is_cache_variable
    from lora_course.grading.sandbox_limits import ENDING_ENV, ENDING_FILE, SubmissionLimits

    base = dict(os.environ if base is None else base)
    sandbox = job["sandbox"]
    env = {k: base[k] for k in KEPT if base.get(k)}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    env.update({k: v for k, v in base.items() if _is_cache_variable(k) and os.path.isabs(v)})
    env.update({k: "1" for k in THREAD_VARIABLES})
    env.update({
        "HOME": sandbox, "TMPDIR": sandbox, "PYTHONPATH": job["pythonpath"], "PYTHONNOUSERSITE": "1",
        "LORA_COURSE_SANDBOX_DIR": sandbox,
        "LORA_COURSE_SANDBOX_MEMORY_MB": str(job.get("memory_mb", 0)),
        "LORA_COURSE_SANDBOX_CPU_S": str(job.get("cpu_s", 0)),
        "LORA_COURSE_SANDBOX_UID": str(job.get("uid", 65534)),
        "LORA_COURSE_SANDBOX_HIDE": os.pathsep.join(job.get("hide", [])),
        "LORA_COURSE_PROFILE": "fast",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LORA_COURSE_GUARD_MODULES": ",".join(job.get("guard_packages", [])),
        **SubmissionLimits(memory_mb=job.get("memory_mb", 0), processes=job.get("processes", SubmissionLimits.processes),
                           disk_mb=job.get("disk_mb", SubmissionLimits.disk_mb)).environment(),
        ENDING_ENV: str(Path(job["workdir"]) / ENDING_FILE),  # in the grader's private folder: hidden from the kernel
    })
    return env


def _kernelspec(root: Path, env: dict) -> None:
    spec = root / "kernels" / "lora-course-sandbox"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "lora_course.grading.sandbox_kernel", "-f", "{connection_file}"],
        "display_name": "lora-course sandbox", "language": "python", "env": env,
    }))


def run(job: dict) -> dict:
    from nbgrader.apps import NbGraderAPI

    from lora_course.grading.course import _quiet, _tools_on_path, nbgrader_config
    from lora_course.grading.execute import GuardedExecute

    _tools_on_path()
    work = Path(job["workdir"])
    course = work / "course"
    shutil.copytree(job["template"], course)
    a, student = job["assignment"], job["student"]
    dest = course / "submitted" / student / a
    dest.mkdir(parents=True)
    shutil.copy(job["notebook"], dest / f"{a}.ipynb")

    sandbox = Path(job["sandbox"])
    env = kernel_environment(job)
    _kernelspec(work, env)
    os.environ["JUPYTER_PATH"] = str(work)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(sandbox)
    cfg = nbgrader_config(course, cell_timeout=job.get("cell_timeout", 60), kernel_name="lora-course-sandbox")
    cfg.KernelManager.transport = "ipc"
    cfg.KernelManager.ip = str(sandbox / "kernel")
    cfg.KernelManager.connection_file = str(sandbox / "connection.json")
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute

    GuardedExecute.kernel_env = env
    cfg.Autograde.autograde_preprocessors = [GuardedExecute if p is Execute else p
                                             for p in Autograde().autograde_preprocessors]
    with _quiet():
        api = NbGraderAPI(config=cfg)
        result = api.autograde(a, student, force=True, create=True)
    out: dict = {"success": bool(result["success"]), "log": result.get("log", "")[-4000:], "error": result.get("error")}
    if result["success"]:
        out.update(_collect(api, course, a, student))
    return out


def _collect(api, course: Path, a: str, student: str) -> dict:
    import nbformat

    nb = nbformat.read(course / "autograded" / student / a / f"{a}.ipynb", as_version=4)
    cells = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade_id"):
            continue
        errors = [f"{o.get('ename')}: {o.get('evalue', '')}" for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        errors += [o.get("text", "")[-300:] for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        cells[meta["grade_id"]] = {"errors": errors}
    with api.gradebook as gb:
        sub = gb.find_submission_notebook(a, a, student)
        grades = {g.name: {"auto": g.auto_score, "max": g.max_score, "manual_needed": bool(g.needs_manual_grade)}
                  for g in sub.grades}
    from lora_course.grading.execute import LAST_RUN

    return {"grades": grades, "cells": cells, "tampering": LAST_RUN.get("tampering", []),
            "kernel_died": LAST_RUN.get("kernel_died"), "interrupted": LAST_RUN.get("interrupted", [])}


def run_job_file(job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    try:
        res = run(job)
    except Exception as e:  # noqa: BLE001 - reported per student, never fatal for the class
        import traceback

        res = {"success": False, "error": f"{type(e).__name__}: {e}", "log": traceback.format_exc()[-4000:]}
    (job_path.parent / "result.json").write_text(json.dumps(res))


def serve(log_path: str) -> None:
    """Grade the jobs whose paths arrive on stdin, one per line; answer ``DONE <path>`` on the original stdout.
    Everything else this process and its kernels print goes to ``log_path``: a kernel cannot write on the channel
    (the descriptor is not inherited), and one worker saves nbgrader's start-up for every submission after the first."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for line in sys.stdin:
        path = line.strip()
        if path:
            run_job_file(Path(path))
            channel.write(f"DONE {path}\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
    else:
        run_job_file(Path(sys.argv[1]))
