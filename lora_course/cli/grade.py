"""``lora-course grade ASSIGNMENT SUBMISSIONS --out DIR [--course COURSE]``: autograde a class's submissions with
nbgrader. The exercises with their hidden tests come from a course folder: --course COURSE, else LORA_COURSE_REPO,
else the current folder when it is one, else the checkout the package runs from. An installed package has none:
write one with ``lora-course course export COURSE`` in a checkout of the course repository and keep it private."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("grade", help="autograde a folder or zip of submissions for one exercise",
                              description=__doc__)
    p.add_argument("assignment", help="e.g. 02-lora-layer (a folder of the course folder's solutions/)")
    p.add_argument("submissions", help="folder (one sub-folder or file per student) or .zip of the submissions")
    p.add_argument("--out", required=True, help="folder for grades.csv, feedback/ and summary.{md,json}")
    p.add_argument("--course", metavar="COURSE", default=None,
                   help="course folder: a checkout of the course repository or a folder written by "
                        "`lora-course course export` (default: LORA_COURSE_REPO, the current folder, the checkout)")
    p.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    p.add_argument("--cell-timeout", type=int, default=30, help="seconds a cell may run (default 30)")
    p.add_argument("--notebook-timeout", type=int, default=300, help="seconds a submission may take (default 300)")
    p.add_argument("--memory-mb", type=int, default=4096,
                   help="memory of a submission, all its processes together (and of each one; default 4096)")
    p.add_argument("--processes", type=int, default=256,
                   help="processes and threads a submission may run at once (default 256)")
    p.add_argument("--disk-mb", type=int, default=512, help="what a submission may write, all files together "
                                                               "(default 512)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the hidden checks' inputs (default: drawn at grading time; summary.json records "
                        "it, so a run can be repeated exactly)")
    p.set_defaults(func=run)


def run(args) -> int:
    from lora_course.grading.pipeline import Limits, grade

    summary = grade(args.assignment, args.submissions, args.out, jobs=args.jobs,
                    limits=Limits(args.cell_timeout, args.notebook_timeout, args.memory_mb, args.processes,
                                  args.disk_mb), course=args.course,
                    seed=args.seed)
    print(f"{summary['graded']} of {summary['submissions']} graded; mean "
          f"{summary['mean'] if summary['mean'] is None else round(summary['mean'], 2)} / {summary['max_score']:g}; "
          f"see {args.out}/summary.md")
    return 0
