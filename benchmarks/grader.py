"""The autograder: submissions graded per minute, with two workers against one.

    .venv/bin/python benchmarks/grader.py [--repeats N] [--smoke]

The class is the well-formed part of the synthetic class of tests/test_grading.py (correct, wrong,
alternative, Colab-stripped, renamed, reordered, hostile): the submissions built to hit a time limit
(an endless loop, eight slow cells) are left out, because they measure the limits, not the grader.
Each round grades the same class with ``jobs=1`` and ``jobs=2`` (interleaved, the order rotated);
the ratio is the parallel speed-up on this machine's cores.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Peer, base_arguments, markdown_table, prepare, ratio, run_interleaved, timed, write  # noqa: E402

from lora_course.grading.pipeline import grade  # noqa: E402
from lora_course.grading.synthetic import A, CLASS_LIMITS, synthetic_class  # noqa: E402

LIMIT_PROBES = ("endless_loop", "too_slow_overall")
SMOKE_CLASS = ("correct_alice", "wrong_no_scaling")


def graded_class(folder: Path, only: tuple[str, ...] | None) -> None:
    for student in synthetic_class(folder):
        if student in LIMIT_PROBES or (only and student not in only):
            for f in folder.glob(f"{student}*"):  # a student's folder, or files named by the student
                f.unlink() if f.is_file() else shutil.rmtree(f)


def grader_peer(name: str, jobs: int, klass: Path, work: Path) -> Peer:
    def run():
        out = Path(tempfile.mkdtemp(dir=work))
        seconds, summary = timed(lambda: grade(A, klass, out, jobs=jobs, limits=CLASS_LIMITS, progress=lambda m: None))
        shutil.rmtree(out, ignore_errors=True)
        return {"seconds": seconds, "submissions": summary["submissions"],
                "submissions_per_minute": summary["submissions"] / seconds * 60, "scores": summary["scores"]}

    return Peer(name, run)


def main(argv=None) -> dict:
    parser = base_arguments(__doc__)
    args = parser.parse_args(argv)
    prepare(args)
    repeats = 1 if args.smoke else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        graded_class(work / "class", SMOKE_CLASS if args.smoke else None)
        peers = [grader_peer("1 worker", 1, work / "class", work), grader_peer("2 workers", 2, work / "class", work)]
        results = run_interleaved(peers, repeats=repeats, warmup=0)
    same = all(r["scores"] == results["1 worker"].rounds[0]["scores"] for res in results.values() for r in res.rounds)
    ratios = [{**ratio(results, "2 workers", "1 worker", "submissions_per_minute"),
               "name": "grader submissions/min 2 workers / 1 worker",
               "differs": "only the number of kernels grading at once (2 vs 1); the same class, limits and grader"}]
    n = results["1 worker"].rounds[0]["submissions"]
    rows = [{"peer": name, "submissions": n, "median_s": r.median("seconds"),
             "submissions_per_minute": r.median("submissions_per_minute")} for name, r in results.items()]
    table = markdown_table(rows, ["peer", "submissions", "median_s", "submissions_per_minute"])
    table += (f"\n\nTwo workers grade {ratios[0]['ratio']:.2f}x as many submissions a minute as one (rounds "
              f"{ratios[0]['min']:.2f} .. {ratios[0]['max']:.2f}); every round gave the same grades: {same}.\n")
    print(table)
    payload = {"submissions": n, "repeats": repeats, "identical_grades_every_round": same, "ratios": ratios,
               "results": {k: [{x: y for x, y in r.items() if x != "scores"} for r in v.rounds] for k, v in results.items()}}
    write("grader", payload, table, args.out)
    return payload


if __name__ == "__main__":
    main()
