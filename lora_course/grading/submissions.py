"""Reading submissions as instructors get them: a folder (one sub-folder per student, or files named by
student) or a zip of the same. Everything is read into memory; the input is never written to."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from lora_course.errors import SubmissionError

IGNORED = re.compile(r"(^|/)(__MACOSX|\.ipynb_checkpoints|\.DS_Store|\._)")
MAX_FILE = 50 << 20


@dataclass
class Submission:
    student: str  # as it appears in the input
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content

    @property
    def student_id(self) -> str:
        """A name nbgrader and file systems accept."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.student).strip("._") or "student"


def _student_of_file(name: str) -> str:
    stem = Path(name).stem
    stem = re.sub(r"^Copy of ", "", stem)
    return stem


def _group(entries: dict[str, bytes]) -> list[Submission]:
    entries = {k: v for k, v in entries.items() if not IGNORED.search(k)}
    tops = {k.split("/", 1)[0] for k in entries}
    # a zip of one folder holding the class (sub-folders, or several notebooks): look inside it
    while len(tops) == 1 and all("/" in k for k in entries) and (
            any(k.count("/") >= 2 for k in entries) or sum(k.endswith(".ipynb") for k in entries) > 1):
        entries = {k.split("/", 1)[1]: v for k, v in entries.items()}
        tops = {k.split("/", 1)[0] for k in entries}
    subs: dict[str, Submission] = {}
    for key, data in sorted(entries.items()):
        if "/" in key:
            student, rest = key.split("/", 1)
        else:
            student, rest = _student_of_file(key), key
        subs.setdefault(student, Submission(student)).files[rest] = data
    return [subs[k] for k in sorted(subs)]


def read_submissions(path: str | Path) -> list[Submission]:
    path = Path(path)
    if path.is_dir():
        entries = {}
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.stat().st_size <= MAX_FILE:
                entries[f.relative_to(path).as_posix()] = f.read_bytes()
        return _group(entries)
    if path.is_file() and zipfile.is_zipfile(path):
        entries = {}
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as z:
            for info in z.infolist():
                name = info.filename
                if info.is_dir() or name.startswith("/") or ".." in name.split("/") or info.file_size > MAX_FILE:
                    continue
                entries[name] = z.read(info)
        return _group(entries)
    if path.exists():
        raise SubmissionError(f"{path} is neither a folder nor a zip file. Fix: pass the folder or the .zip of submissions")
    raise SubmissionError(f"{path} does not exist. Fix: pass the folder or the .zip of the class's submissions")
