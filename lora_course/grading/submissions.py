"""Reading submissions as instructors get them: a folder or a zip, in the layouts classes come in. Everything is
read into memory; the input is never written to.

Layouts understood (any of them inside one wrapping folder, as zips of a folder are):

* one folder per student (``alice/02-lora-layer.ipynb``), or one file per student (``alice.ipynb``);
* section folders holding either of those (``section-A/alice/...``, ``section-B/bob.ipynb``);
* Canvas's "Download submissions": ``lastfirst_12345_67890_filename.ipynb`` (``lastfirst_LATE_...`` when late):
  one student per Canvas user id (12345), whatever the number of files;
* Moodle's "Download all submissions": ``Full Name_12345_assignsubmission_file_/filename.ipynb`` (or the same
  prefix on a file name when downloaded without folders): one student per participant id (12345).

``__MACOSX/``, ``.ipynb_checkpoints/``, ``.DS_Store`` and ``._*`` are never read. What cannot be told apart for
sure (the same student in two sections, a folder holding both notebooks and folders of notebooks, loose files
beside student folders) is graded in the most likely way and reported in ``Class.warnings``.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from lora_course.errors import SubmissionError

IGNORED = re.compile(r"(^|/)(__MACOSX|\.ipynb_checkpoints|\.DS_Store|\._)")
MAX_FILE = 50 << 20
CANVAS = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9-]*?)(?:_LATE)?_(?P<uid>\d+)_(?P<sub>\d+)_(?P<file>.+)$")
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<uid>\d+)_assignsubmission_[a-z]+_(?P<file>.*)$")
SECTION_NAME = re.compile(r"^(section|sec|group|grp|class|cohort|period|lab|tutorial|tut|block|seminar)\b[ _.-]*\w*$", re.I)


@dataclass
class Submission:
    student: str  # as derived from the layout (unique in the class)
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content
    mtimes: dict[str, float] = field(default_factory=dict)  # relative path -> modification time (zip entry or file)
    section: str = ""  # the section folder it was found in, if any
    lms: str = ""  # "canvas", "moodle", or "" (a folder or file named by the student)
    identifier: str = ""  # what the LMS identifies the student by: Canvas user id, Moodle participant id; else the name
    origin: str = ""  # where in the input it was found (a folder, or a file name pattern)

    @property
    def student_id(self) -> str:
        """A name nbgrader and file systems accept."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.student).strip("._") or "student"


@dataclass
class Class:
    submissions: list[Submission]
    layout: str  # in words, e.g. "2 section folders of student folders"
    warnings: list[str] = field(default_factory=list)


def _student_of_file(name: str) -> str:
    stem = Path(name).stem
    stem = re.sub(r"^Copy of ", "", stem)
    return stem


def _has_nb(paths) -> bool:
    return any(p.lower().endswith(".ipynb") for p in paths)


class _Builder:
    def __init__(self, entries: dict[str, tuple[bytes, float]]):
        self.entries = entries
        self.subs: dict[tuple[str, str], Submission] = {}  # (section, key) -> submission
        self.warnings: list[str] = []

    def add(self, section: str, key: str, display: str, rest: str, path: str, lms: str = "", identifier: str = "",
            origin: str = "") -> None:
        sub = self.subs.setdefault((section, key), Submission(display, section=section, lms=lms,
                                                              identifier=identifier or display, origin=origin))
        if rest in sub.files:  # two files of one student with one name (two Canvas submissions of it)
            stem, dot, ext = rest.rpartition(".")
            rest = f"{stem} [{len(sub.files)}].{ext}" if dot else f"{rest} [{len(sub.files)}]"
        sub.files[rest], sub.mtimes[rest] = self.entries[path]

    def file(self, section: str, path: str, name: str) -> None:
        """A file directly in the class (or a section) folder: a student by its name."""
        if m := CANVAS.match(name):
            self.add(section, "canvas:" + m["uid"], f"{m['name']}_{m['uid']}", m["file"], path, "canvas", m["uid"],
                     "file:canvas")
        elif m := MOODLE.match(name):
            self.add(section, "moodle:" + m["uid"], m["name"], m["file"] or name, path, "moodle", m["uid"], "file:moodle")
        elif name.lower().endswith(".ipynb"):
            student = _student_of_file(name)
            self.add(section, "name:" + student, student, name, path, origin="file")
        else:
            where = f"{section}/" if section else ""
            self.warnings.append(f"ignored {where}{name}: a file that is neither a notebook nor in a student's folder")

    def folder(self, section: str, prefix: str, name: str, paths: list[str]) -> None:
        """A student's folder: everything below it is theirs."""
        if m := MOODLE.match(name):
            key, display, lms, ident = "moodle:" + m["uid"], m["name"], "moodle", m["uid"]
        else:
            key, display, lms, ident = "name:" + name, name, "", ""
        for p in paths:
            self.add(section, key, display, p[len(prefix) + len(name) + 1:], p, lms, ident, "folder")

    def level(self, section: str, prefix: str, paths: list[str], allow_sections: bool) -> None:
        """The files under ``prefix``: loose files are students by name; folders are students or sections."""
        children: dict[str, list[str]] = {}
        for p in paths:
            rest = p[len(prefix):]
            if "/" in rest:
                children.setdefault(rest.split("/", 1)[0], []).append(p)
            else:
                self.file(section, p, rest)
        for name, below in sorted(children.items()):
            direct = [p for p in below if "/" not in p[len(prefix) + len(name) + 1:]]
            nested: dict[str, list[str]] = {}
            for p in below:
                rest = p[len(prefix) + len(name) + 1:]
                if "/" in rest:
                    nested.setdefault(rest.split("/", 1)[0], []).append(p)
            folders_with_nb = [n for n, ps in nested.items() if _has_nb(ps)]
            is_moodle = bool(MOODLE.match(name))
            section_like = bool(SECTION_NAME.match(name))
            lms_inside = any(CANVAS.match(Path(p).name) or MOODLE.match(Path(p).name) for p in direct) or \
                any(MOODLE.match(n) for n in nested)
            n_direct = sum(p.lower().endswith(".ipynb") for p in direct)
            if allow_sections and not is_moodle and (
                    (not n_direct and len(folders_with_nb) >= 2) or lms_inside
                    or (section_like and (folders_with_nb or n_direct >= 2))):
                if _has_nb(direct) and folders_with_nb:
                    self.warnings.append(f"ambiguous: {prefix}{name}/ holds both notebooks and folders of notebooks; "
                                         "read as a section (its notebooks as students by file name)")
                self.level(name if not section else f"{section}/{name}", f"{prefix}{name}/", below, False)
            else:
                if _has_nb(direct) and folders_with_nb and not is_moodle:
                    self.warnings.append(f"ambiguous: {prefix}{name}/ holds both notebooks and folders of notebooks "
                                         f"({', '.join(sorted(folders_with_nb)[:3])}); graded as one student, "
                                         f"'{name}'")
                self.folder(section, prefix, name, below)

    def finish(self) -> list[Submission]:
        by_student: dict[str, list[Submission]] = {}
        for (section, key), sub in self.subs.items():
            by_student.setdefault(key, []).append(sub)
        for key, subs in by_student.items():
            if len(subs) > 1:  # the same student in two sections: kept apart, named by section
                self.warnings.append(f"ambiguous: student '{subs[0].student}' appears in "
                                     f"{' and '.join(s.section or '(top level)' for s in subs)}: graded separately as "
                                     + ", ".join(f"'{s.section}/{s.student}'" for s in subs))
                for s in subs:
                    s.student = f"{s.section}/{s.student}" if s.section else s.student
        # distinct display names for distinct students (two Moodle "Jo Lee"s with different ids)
        names: dict[str, list[Submission]] = {}
        for sub in self.subs.values():
            names.setdefault(sub.student, []).append(sub)
        for name, subs in names.items():
            if len(subs) > 1:
                for s in subs:
                    s.student = f"{name}_{s.identifier}" if s.identifier and s.identifier != name else f"{s.section}/{name}"
        return sorted(self.subs.values(), key=lambda s: (s.student, s.section))


def _group_class(entries: dict[str, tuple[bytes, float]]) -> Class:
    entries = {k: v for k, v in entries.items() if not IGNORED.search(k)}
    tops = {k.split("/", 1)[0] for k in entries}
    wrapper = []
    # a zip of one folder holding the class (sub-folders, or several notebooks): look inside it, unless that one
    # folder is a single student's (one notebook) or is named as Moodle names a student's folder
    while len(tops) == 1 and all("/" in k for k in entries) and not MOODLE.match(next(iter(tops))) \
            and not SECTION_NAME.match(next(iter(tops))) and (
            any(k.count("/") >= 2 for k in entries) or sum(k.endswith(".ipynb") for k in entries) > 1):
        wrapper.append(next(iter(tops)))
        entries = {k.split("/", 1)[1]: v for k, v in entries.items()}
        tops = {k.split("/", 1)[0] for k in entries}
    b = _Builder(entries)
    b.level("", "", sorted(entries), True)
    subs = b.finish()
    sections = sorted({s.section for s in subs if s.section})
    words = {"file:canvas": "Canvas file names", "file:moodle": "Moodle file names", "folder": "folders",
             "file": "files named by student"}
    counts: dict[str, int] = {}
    for s in subs:
        k = "moodle folders" if s.lms == "moodle" and s.origin == "folder" else words.get(s.origin, s.origin)
        counts[k] = counts.get(k, 0) + 1
    what = ", ".join(f"{n} by {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    layout = (f"{len(sections)} section folder(s) ({', '.join(sections[:6])}{', ...' if len(sections) > 6 else ''}); "
              if sections else "") + (f"inside {'/'.join(wrapper)}/; " if wrapper else "") + f"{len(subs)} student(s): {what or 'none'}"
    if {s.lms for s in subs} - {""} and any(not s.lms for s in subs):
        b.warnings.append("mixed layout: some students come from an LMS export, others from plain folders or files")
    return Class(subs, layout, b.warnings)


def _group(entries: dict[str, bytes]) -> list[Submission]:
    return _group_class({k: (v, 0.0) for k, v in entries.items()}).submissions


def _entries(path: Path) -> dict[str, tuple[bytes, float]]:
    if path.is_dir():
        entries = {}
        for f in sorted(path.rglob("*")):
            if f.is_file() and not IGNORED.search(f.relative_to(path).as_posix()) and f.stat().st_size <= MAX_FILE:
                entries[f.relative_to(path).as_posix()] = (f.read_bytes(), f.stat().st_mtime)
        return entries
    if path.is_file() and zipfile.is_zipfile(path):
        entries = {}
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as z:
            for info in z.infolist():
                name = info.filename
                if info.is_dir() or name.startswith("/") or ".." in name.split("/") or info.file_size > MAX_FILE:
                    continue
                try:
                    mtime = time.mktime((*info.date_time, 0, 0, -1))
                except (OverflowError, ValueError):
                    mtime = 0.0
                entries[name] = (z.read(info), mtime)
        return entries
    if path.exists():
        raise SubmissionError(f"{path} is neither a folder nor a zip file. Fix: pass the folder or the .zip of submissions")
    raise SubmissionError(f"{path} does not exist. Fix: pass the folder or the .zip of the class's submissions")


def read_class(path: str | Path) -> Class:
    """The class in ``path`` (a folder or a zip): its students, the layout found and what was ambiguous."""
    return _group_class(_entries(Path(path)))


def read_submissions(path: str | Path) -> list[Submission]:
    return read_class(path).submissions
