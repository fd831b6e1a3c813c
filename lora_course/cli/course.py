"""``lora-course course export DIR [--course COURSE]``: write the private course folder an instructor grades from.

The installed package holds no hidden tests (students can install it too). In a checkout of the course
repository, ``lora-course course export DIR`` writes DIR: the exercises with their hidden tests (solutions/), the
released student notebooks (exercises/), the autograder's files and a README.txt. Keep DIR private; grade with
``lora-course grade ASSIGNMENT SUBMISSIONS --course DIR --out grades/``."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("course", help="course folders for grading: export one from a checkout",
                              description=__doc__)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = sub.add_parser("export", help="write a private course folder (hidden tests included) to grade from",
                       description=__doc__)
    e.add_argument("dir", help="new or empty folder to write")
    e.add_argument("--course", metavar="COURSE", default=None,
                   help="the course folder to export (default: LORA_COURSE_REPO, the current folder, the checkout "
                        "the package runs from)")
    e.set_defaults(func=run_export)


def run_export(args) -> int:
    from lora_course.grading.course import export_course

    names = export_course(args.course, args.dir)
    print(f"wrote {args.dir}: {len(names)} assignments ({', '.join(names)}) with their hidden tests; keep it private. "
          f"Grade with: lora-course grade ASSIGNMENT SUBMISSIONS --course {args.dir} --out grades/ "
          f"(see {args.dir}/README.txt)")
    return 0
