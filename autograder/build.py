"""Build the course's notebooks from their diffable sources.

    python autograder/build.py            # autograder/sources/*.py -> solutions/, then nbgrader -> exercises/
    python autograder/build.py --check    # exit 1 if anything committed differs from what this would write

solutions/<a>/<a>.ipynb is built from autograder/sources/<a>.py (see lora_course/grading/source_format.py);
exercises/<a>/<a>.ipynb is what ``nbgrader generate_assignment`` makes of it. Neither is edited by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "book" / "_ext"))

from lora_course.grading.course import student_versions  # noqa: E402
from lora_course.grading.source_format import build_file  # noqa: E402


def setup_cell() -> str:
    import lora_book

    return lora_book.setup_cell_source(*lora_book.repository_from_book_config(ROOT / "_config.yml"))


def expected_files(only: list[str] | None = None) -> dict[Path, str]:
    """path -> text, solutions first (exercises are generated from the solutions on disk)."""
    out = {}
    for src in sorted((ROOT / "autograder" / "sources").glob("*.py")):
        if only and src.stem not in only:
            continue
        out[ROOT / "solutions" / src.stem / f"{src.stem}.ipynb"] = build_file(src, setup_cell())
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    only = [a for a in argv if not a.startswith("--")] or None
    stale = []
    sols = expected_files(only)
    for path, text in sols.items():
        if not path.is_file() or path.read_text() != text:
            stale.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    generated = student_versions([sol.parent.name for sol in sols], ROOT)
    for a, text in generated.items():
        ex = ROOT / "exercises" / a / f"{a}.ipynb"
        if not ex.is_file() or ex.read_text() != text:
            stale.append(ex)
            if not check:
                ex.parent.mkdir(parents=True, exist_ok=True)
                ex.write_text(text)
    for p in stale:
        print(("stale: " if check else "wrote ") + str(p.relative_to(ROOT)))
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
