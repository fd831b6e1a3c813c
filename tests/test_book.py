"""The book: notebooks stored clean, the toc and the files agree, every chapter starts with the setup
cell built from _config.yml, and (slow) the site builds in the fast profile and renders in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
sys.path.insert(0, str(ROOT / "scripts"))

import build_book  # noqa: E402
import lora_book  # noqa: E402

ASSIGNMENTS = [
    "01-memory-breakdown", "02-lora-layer", "03-inject-and-count", "04-gradient-accumulation",
    "05-gradient-checkpointing", "06-nf4-quantization", "07-merge-unmerge", "08-evaluation-metrics",
]
REQUIRED_REFERENCES = [
    "hu2021lora", "dettmers2023qlora", "zhang2023adalora", "li2021prefix", "liu2022ptuningv2",
    "chen2016checkpointing", "korthikanti2022recomputation", "kalajdzievski2023rslora", "dettmers2022optimizers",
]

BOOK_NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
EXERCISE_NOTEBOOKS = sorted((ROOT / "exercises").glob("*/*.ipynb"))
CHAPTERS = [p for p in BOOK_NOTEBOOKS if re.match(r"\d\d-", p.name)]


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def test_there_are_chapters():
    assert CHAPTERS, "no chapter notebooks (book/NN-*.ipynb) found"


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS + EXERCISE_NOTEBOOKS, ids=_rel)
def test_notebook_is_valid_and_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{_rel(path)}: code cells {dirty} have outputs or execution counts; clear them before committing"
    # nbformat.read fills in missing cell ids (with a warning) and would hide them: read the file as saved
    cells = json.loads(Path(path).read_text())["cells"]
    missing = [i for i, c in enumerate(cells) if not c.get("id")]
    ids = [c.get("id") for c in cells]
    assert not missing, f"{_rel(path)}: cells {missing} have no id (nbformat 4.5 requires one); give each a unique id"
    assert len(set(ids)) == len(ids), f"{_rel(path)}: cell ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}"


def test_every_toc_entry_exists_and_every_page_is_in_the_toc():
    files = build_book.toc_files()
    missing = [_rel(f) for f in files if not f.is_file()]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"
    pages = {p for p in (ROOT / "book").glob("*") if p.suffix in (".md", ".ipynb") and p.name != "README.md"}
    assert not pages - set(files), f"pages not in _toc.yml: {sorted(map(_rel, pages - set(files)))}"


def test_chapters_are_notebooks():
    """Colab opens only .ipynb, so a chapter written as Markdown would have a dead launch button."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = [c["file"] for part in toc["parts"] if part["caption"] == "Chapters" for c in part["chapters"]]
    assert chapters
    for entry in chapters:
        assert (ROOT / (entry + ".ipynb")).is_file(), f"chapter {entry} is not a notebook"


def test_repository_is_named_once():
    """The repository URL is in _config.yml and nowhere else in the book's sources."""
    url, branch = lora_book.repository_from_book_config(ROOT / "_config.yml")
    assert url.startswith("https://github.com/") and branch
    config_text = (ROOT / "_config.yml").read_text()
    assert config_text.count(url) == 1
    for path in [*(ROOT / "book").glob("*.md"), ROOT / "_toc.yml"]:
        assert url not in path.read_text(), f"{_rel(path)} repeats the repository URL; use {{{{ repository_url }}}}"


@pytest.mark.parametrize("path", CHAPTERS, ids=_rel)
def test_chapter_starts_with_the_setup_cell(path):
    url, branch = lora_book.repository_from_book_config(ROOT / "_config.yml")
    first = lora_book.first_code_cell(json.loads(path.read_text()))
    assert first == lora_book.setup_cell_source(url, branch), (
        f"{_rel(path)}: first code cell is not the setup cell. Fix: python book/_ext/lora_book.py --write {_rel(path)}")
    assert f'%pip install --quiet "lora-course @ git+{url}@{branch}"' in first
    assert 'if "google.colab" in sys.modules:' in first
    assert "profile = current_profile()" in first


def test_setup_cell_check_warns_about_a_wrong_first_cell(tmp_path, caplog):
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(lora_book.setup_cell_source("https://github.com/o/r", "main"))])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")])
    nbformat.write(good, tmp_path / "good.ipynb")
    nbformat.write(bad, tmp_path / "bad.ipynb")
    app = SimpleNamespace(config=SimpleNamespace(html_theme_options={"repository_url": "https://github.com/o/r",
                                                                     "repository_branch": "main"}),
                          srcdir=str(tmp_path))
    env = SimpleNamespace(found_docs={"good", "bad"}, doc2path=lambda d: str(tmp_path / f"{d}.ipynb"))
    with caplog.at_level("WARNING"):
        lora_book._check_setup_cells(app, env, [])
    messages = [r.getMessage() for r in caplog.records]
    assert any("bad.ipynb" in m and "--write bad.ipynb" in m for m in messages), messages
    assert not any("good.ipynb" in m for m in messages)


def test_colab_url_is_built_from_the_repository():
    assert lora_book.colab_url("https://github.com/o/r/", "main", "exercises/a/a.ipynb") == \
        "https://colab.research.google.com/github/o/r/blob/main/exercises/a/a.ipynb"


def test_config_without_repository_is_a_clear_error(tmp_path):
    (tmp_path / "_config.yml").write_text("title: x\n")
    with pytest.raises(ValueError, match="repository.url"):
        lora_book.repository_from_book_config(tmp_path / "_config.yml")


def test_exercises_page_links_every_assignment_to_its_notebook():
    text = (ROOT / "book" / "exercises.md").read_text()
    linked = re.findall(r"\{colab\}`[^<`]*<exercises/([^/]+)/([^/>]+)\.ipynb>`", text)
    assert [a for a, _ in linked] == ASSIGNMENTS
    assert all(a == b for a, b in linked), "exercise notebooks live at exercises/<a>/<a>.ipynb"


@pytest.mark.skipif(not (ROOT / "exercises").is_dir(), reason="exercises/ has not been generated in this checkout yet")
def test_listed_exercises_exist_and_every_exercise_is_listed():
    for a in ASSIGNMENTS:
        assert (ROOT / "exercises" / a / f"{a}.ipynb").is_file(), f"exercise notebook exercises/{a}/{a}.ipynb is missing"
    released = {p.parent.name for p in EXERCISE_NOTEBOOKS}
    assert released <= set(ASSIGNMENTS), f"exercises not listed on book/exercises.md: {sorted(released - set(ASSIGNMENTS))}"


def test_references_hold_the_course_papers_and_citations_resolve():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    assert set(REQUIRED_REFERENCES) <= keys
    sources = "".join(p.read_text() for p in (ROOT / "book").glob("*")
                      if p.suffix in (".md", ".ipynb") and p.name != "README.md")
    cited = set(re.findall(r"\{cite(?::[pt])?\}`([^`\s]+)`", sources))
    cited = {k.strip() for group in cited for k in group.split(",")}
    assert cited and cited <= keys, f"citations without a bib entry: {sorted(cited - keys)}"


def test_profile_config_gets_its_own_execution_cache(tmp_path):
    fast = yaml.safe_load(build_book.write_profile_config("fast", tmp_path).read_text())
    cpu = yaml.safe_load(build_book.write_profile_config("cpu", tmp_path).read_text())
    assert fast["execute"]["cache"] != cpu["execute"]["cache"]
    assert fast["execute"]["execute_notebooks"] == "cache"
    assert fast["execute"]["allow_errors"] is False and fast["execute"]["raise_on_error"] is True
    assert Path(fast["sphinx"]["local_extensions"]["lora_book"]).is_absolute()


# --- the built site, in a browser ----------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--allow-file-access-from-files"]
# The site loads MathJax 3 from a CDN, which a test must not reach. Debian's libjs-mathjax (MathJax 2.7)
# is put in its place in a copy of the chapter, so the screenshot and the DOM show typeset math.
LOCAL_MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")
MATHJAX2_CONFIG = ('<script>window.MathJax = {tex2jax: {inlineMath: [["\\\\(", "\\\\)"]], '
                   'displayMath: [["\\\\[", "\\\\]"]], processClass: "tex2jax_process|mathjax_process|math|output_area"}};</script>')


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _run_chromium(exe, tmp_path, *args, timeout=90):
    profile_dir = tmp_path / "chromium-profile"
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _with_local_mathjax(page: Path) -> Path:
    """A copy of the page that typesets its math with the local MathJax (the page itself if it has no math)."""
    html = page.read_text()
    if not re.search(r'<script[^>]*src="https://[^"]*mathjax@3[^"]*"', html):
        return page
    html = re.sub(r"<script>window\.MathJax = .*?</script>", lambda m: MATHJAX2_CONFIG, html, count=1)
    html = re.sub(r'<script[^>]*src="https://[^"]*mathjax@3[^"]*"></script>',
                  lambda m: f'<script src="{LOCAL_MATHJAX.as_uri()}?config=TeX-AMS_CHTML"></script>', html, count=1)
    out = page.with_name(page.stem + ".local-mathjax.html")  # same folder: the page's relative links still work
    out.write_text(html)
    return out


def _cut_into_tiles(png: Path, height: int) -> None:
    """chapter.png -> chapter-1.png, chapter-2.png, ...: pieces small enough to look at; blank ones dropped."""
    from PIL import Image

    for old in png.parent.glob(f"{png.stem}-*.png"):
        old.unlink()
    image = Image.open(png)
    for i, top in enumerate(range(0, image.height, height), start=1):
        box = (0, top, image.width, min(top + height, image.height))
        # past the end of the page only the sidebar's border is drawn: look at the text column
        column = (image.width // 4, box[1], image.width * 3 // 4, box[3])
        if image.crop(column).convert("L").getextrema()[0] < 250:
            image.crop(box).save(png.with_name(f"{png.stem}-{i}.png"))


@pytest.mark.slow
def test_site_builds_in_fast_profile_and_renders_in_chromium(tmp_path):
    exe = _chromium()
    # CI must run this test; elsewhere a machine without the browser skips it, saying what to install.
    missing = pytest.fail if os.environ.get("CI") else pytest.skip
    if exe is None:
        missing("Chromium is not installed. Fix: apt-get install -y chromium libjs-mathjax (make test does it as root)")
    if not LOCAL_MATHJAX.is_file():
        missing(f"{LOCAL_MATHJAX} is missing (MathJax for rendering offline). Fix: apt-get install -y libjs-mathjax")
    env = dict(os.environ, LORA_COURSE_PROFILE="fast")
    build = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--output", str(tmp_path)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    assert "execution time per chapter" in build.stdout
    html = tmp_path / "_build" / "html"

    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    chapter = "02-lora-from-first-principles"  # math, figures and glued numbers, all checked below
    chapter_page = html / "book" / f"{chapter}.html"
    assert chapter_page.is_file()
    pages = {  # name: (url, window height)
        "index": (_with_local_mathjax(html / "book" / "intro.html").as_uri(), 1400),
        "chapter": (_with_local_mathjax(chapter_page).as_uri(), 16000),  # the whole chapter, cut into tiles below
        "exercises": (_with_local_mathjax(html / "book" / "exercises.html").as_uri(), 1200),
    }
    dom = {}
    for name, (url, height) in pages.items():
        shot = shots / f"{name}.png"
        shot.unlink(missing_ok=True)
        r = _run_chromium(exe, tmp_path, "--virtual-time-budget=10000", f"--screenshot={shot}",
                          f"--window-size=1280,{height}", url)
        assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot of {name}: {r.stderr[-2000:]}"
        r = _run_chromium(exe, tmp_path, "--virtual-time-budget=10000", "--dump-dom", url)
        assert r.returncode == 0 and "</html>" in r.stdout, r.stderr[-2000:]
        dom[name] = r.stdout

    _cut_into_tiles(shots / "chapter.png", 2000)

    # the page layout came through (title, navigation) and the repository button is there
    assert "LoRA and QLoRA fine-tuning" in dom["index"]
    for name in pages:
        assert "bd-sidebar-primary" in dom[name], f"{name}: no navigation sidebar"
        assert "github.com/lora-course/lora-course" in dom[name], f"{name}: no repository button"
    # a chapter has the Colab launch button pointing at its own notebook
    colab = f"https://colab.research.google.com/github/lora-course/lora-course/blob/main/book/{chapter}.ipynb"
    assert colab in dom["chapter"]
    # math was typeset by MathJax in the browser, without errors
    assert _with_local_mathjax(chapter_page) != chapter_page, "the chapter does not load MathJax"
    assert dom["chapter"].count("mjx-chtml") >= 20, "MathJax did not typeset the chapter's math"
    assert not re.search(r'class="[^"]*\bmjx-merror\b', dom["chapter"]) and "Math Processing Error" not in dom["chapter"]
    # figures come from cells: images written by the execution, present on disk
    imgs = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom["chapter"])
    assert len(imgs) >= 2, imgs
    for src in imgs:
        assert (html / "book" / src).resolve().is_file(), src
    # numbers in the prose were glued in from cells: SmolLM2's adapter size, counted from its config
    assert "1.84M" in dom["chapter"]
    # the exercises page lists every assignment, as a Colab link or marked as not released yet
    for a in ASSIGNMENTS:
        assert a in dom["exercises"]
    released = [a for a in ASSIGNMENTS if (ROOT / "exercises" / a / f"{a}.ipynb").is_file()]
    for a in released:
        assert f"https://colab.research.google.com/github/lora-course/lora-course/blob/main/exercises/{a}/{a}.ipynb" in dom["exercises"]
    assert dom["exercises"].count("not released yet") >= len(ASSIGNMENTS) - len(released)


# --- how every chapter ends: Summary, Exercise, Self-check ----------------------------------------------

CLOSING = ["## Summary", "## Exercise", "## Self-check"]  # "## Exercises" counts as "## Exercise"
GLUE_REF = re.compile(r"\{glue:text\}`([^`]+)`")
GLUE_CALL = re.compile(r"""\bglue\(\s*["']([^"']+)["']""")
DROPDOWN = re.compile(r"^:::\{dropdown\}|^```\{admonition\}[^\n]*\n:class: dropdown", re.MULTILINE)
# a measurement typed into prose: a number with a unit, a percent sign or "x" (what a cell should glue in)
TYPED_MEASUREMENT = re.compile(r"\b\d[\d,]*(?:\.\d+)?\s*(?:%|[KMG]i?B\b|kB\b|ms\b|s\b|seconds\b|x\b|×)")


def _cell_text(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def _closing_cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells[-len(CLOSING):]


def _prose_only(text: str) -> str:
    """Markdown without math, roles and inline code: what is left is typed by hand."""
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.DOTALL)
    text = re.sub(r"\$[^$\n]+\$", " ", text)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", text)
    return re.sub(r"`[^`\n]*`", " ", text)


def _check_closing_cells(path: Path) -> None:
    """Summary (5-8 bullets), Exercise (a link that exists, or "No exercise"), Self-check (3-4 answers in dropdowns)."""
    name = path.name
    cells = _closing_cells(path)
    headings = [_cell_text(c).lstrip().split("\n", 1)[0] for c in cells]
    assert all(c.cell_type == "markdown" for c in cells) and [h.rstrip("s") for h in headings] == CLOSING, (
        f"{name} must end with three Markdown cells headed {CLOSING}; its last cells are headed {headings}")
    summary, exercise, check = map(_cell_text, cells)

    bullets = re.findall(r"^- ", summary, re.MULTILINE)
    assert 5 <= len(bullets) <= 8, f"{name}: the Summary has {len(bullets)} bullet points, not 5 to 8"

    links = re.findall(r"\{colab\}`[^<`]*<(exercises/[^>]+\.ipynb)>`", exercise)
    assert links or "No exercise" in exercise, (
        f"{name}: the Exercise section neither links an exercise ({{colab}}`name <exercises/...>`) "
        "nor says \"No exercise practises this chapter\"")
    for link in links:
        assert (ROOT / link).is_file(), f"{name} links {link}, which does not exist"

    answers = DROPDOWN.findall(check)
    questions = re.findall(r"^\*\*\d+\.\*\*", check, re.MULTILINE)
    assert 3 <= len(answers) <= 4 and len(questions) == len(answers), (
        f"{name}: the Self-check needs 3 or 4 numbered questions, each followed by its answer in a "
        f"dropdown; found {len(questions)} questions and {len(answers)} dropdowns")
    assert len(re.findall(r"^:::\s*$", check, re.MULTILINE)) == len(answers), (
        f"{name}: every ':::{{dropdown}}' needs its closing ':::'")


def _check_closing_numbers(path: Path) -> None:
    """A number in the Summary or the Self-check is glued from a cell of the same chapter, never typed."""
    nb = nbformat.read(path, as_version=4)
    glued = {k for c in nb.cells if c.cell_type == "code" for k in GLUE_CALL.findall(_cell_text(c))}
    for cell in _closing_cells(path):
        text = _cell_text(cell)
        missing = set(GLUE_REF.findall(text)) - glued
        assert not missing, f"{path.name}: the closing cells use glue keys no code cell of the chapter glues: {missing}"
        typed = TYPED_MEASUREMENT.findall(_prose_only(text))
        assert not typed, f"{path.name}: numbers typed into the closing cells: {typed}; glue them from a cell"


@pytest.mark.parametrize("path", CHAPTERS, ids=_rel)
def test_chapter_ends_with_summary_exercise_and_self_check(path):
    _check_closing_cells(path)


@pytest.mark.parametrize("path", CHAPTERS, ids=_rel)
def test_closing_cells_take_their_numbers_from_cells(path):
    _check_closing_numbers(path)


def test_closing_cell_checks_catch_what_they_are_for(tmp_path):
    """A chapter without its Self-check, an exercise link to nowhere, an unglued key and a typed number fail."""
    chapter = CHAPTERS[0]
    nb = nbformat.read(chapter, as_version=4)
    del nb.cells[-1]
    nbformat.write(nb, tmp_path / "no-check.ipynb")
    with pytest.raises(AssertionError, match="must end with three Markdown cells"):
        _check_closing_cells(tmp_path / "no-check.ipynb")

    nb = nbformat.read(chapter, as_version=4)
    nb.cells[-2].source = "## Exercise\n\n{colab}`gone <exercises/99-gone/99-gone.ipynb>`"
    nbformat.write(nb, tmp_path / "dead-link.ipynb")
    with pytest.raises(AssertionError, match="99-gone.ipynb, which does not exist"):
        _check_closing_cells(tmp_path / "dead-link.ipynb")

    nb = nbformat.read(chapter, as_version=4)
    nb.cells[-3].source += "\n- The step took {glue:text}`no_such_key`."
    nbformat.write(nb, tmp_path / "unglued.ipynb")
    with pytest.raises(AssertionError, match="no_such_key"):
        _check_closing_numbers(tmp_path / "unglued.ipynb")

    nb = nbformat.read(chapter, as_version=4)
    nb.cells[-3].source += "\n- The step took 12.5 s."
    nbformat.write(nb, tmp_path / "typed.ipynb")
    with pytest.raises(AssertionError, match="12.5 s"):
        _check_closing_numbers(tmp_path / "typed.ipynb")
    # math, roles and inline code are not prose
    assert TYPED_MEASUREMENT.findall(_prose_only("fell 3% in {glue:text}`t` `2 s` $4 x$ and 1.5x")) == ["3%", "1.5x"]


# --- the build's chapter sizing: no cell may need more than a quarter of the per-cell limit --------------

def _times_file(path: Path, root: Path, cells_by_notebook: dict[str, list[tuple[int, float]]]) -> Path:
    """A cell-times file as build_book.execute_notebooks writes it, for notebooks under ``root``."""
    notebooks = {}
    for name, cells in cells_by_notebook.items():
        nb = nbformat.read(root / name, as_version=4)
        notebooks[name] = {"code_sha256": build_book.code_fingerprint(nb), "seconds": sum(s for _, s in cells),
                           "executed_at": "2026-01-01T00:00:00+00:00", "cpus": 2, "load_average_before": [0.1, 0.1, 0.1],
                           "cells": [{"index": i, "seconds": s, "first_line": build_book.first_line(nb.cells[i].source)}
                                     for i, s in cells]}
    path.write_text(json.dumps({"profile": "cpu", "limit_s": 360, "notebooks": notebooks}))
    return path


def _synthetic_book(root: Path) -> None:
    (root / "book").mkdir()
    for name in ("01-quick", "02-slow"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("x = 1"),
                                             nbformat.v4.new_code_cell("train(model)  # the long one\nprint(x)")])
        nbformat.write(nb, root / "book" / f"{name}.ipynb")


def test_sizing_check_fails_on_a_planted_slow_cell(tmp_path):
    _synthetic_book(tmp_path)
    limit = 360
    quarter = build_book.CELL_SHARE * limit
    fine = _times_file(tmp_path / "fine.json", tmp_path, {"book/01-quick.ipynb": [(1, 1.0), (2, quarter - 1)],
                                                          "book/02-slow.ipynb": [(1, 0.5), (2, 30.0)]})
    report = build_book.check_sizing(fine, limit, root=tmp_path)
    assert report.ok and report.checked == ["book/01-quick.ipynb", "book/02-slow.ipynb"], report

    slow = _times_file(tmp_path / "slow.json", tmp_path, {"book/01-quick.ipynb": [(1, 1.0), (2, 20.0)],
                                                          "book/02-slow.ipynb": [(1, 0.5), (2, quarter + 10)]})
    report = build_book.check_sizing(slow, limit, root=tmp_path)
    assert not report.ok and len(report.problems) == 1, report
    problem = report.problems[0]
    # it names the chapter, the cell (index and first line), its time and the budget
    for part in ["book/02-slow.ipynb", "cell 2", "train(model)", f"{quarter + 10:.1f} s", f"{quarter:.0f} s", f"{limit} s"]:
        assert part in problem, (part, problem)

    # the command line says the same and exits 1
    assert build_book._print_sizing(slow, limit, root=tmp_path) == 1
    assert build_book._print_sizing(fine, limit, root=tmp_path) == 0
    assert build_book._print_sizing(tmp_path / "missing.json", limit, root=tmp_path) == 2


def test_sizing_check_leaves_out_times_of_code_that_changed(tmp_path):
    _synthetic_book(tmp_path)
    slow = _times_file(tmp_path / "slow.json", tmp_path, {"book/02-slow.ipynb": [(2, 500.0)]})
    nb = nbformat.read(tmp_path / "book" / "02-slow.ipynb", as_version=4)
    nb.cells[2].source = "train(model, steps=2)"  # sized down after the times were recorded
    nbformat.write(nb, tmp_path / "book" / "02-slow.ipynb")
    report = build_book.check_sizing(slow, 360, root=tmp_path)
    assert report.ok and not report.checked and "code changed" in report.notes[0], report
    # without a checkout to compare with, the recorded times are judged as they are
    assert not build_book.check_sizing(slow, 360, root=None).ok


def test_timeout_message_names_the_chapter_the_cell_the_limit_and_what_to_do():
    text = build_book.timeout_advice("book/03-rank.ipynb", 6, "\n# the sweep\nsweep = run(plan)\n", 360, "cpu",
                                     load=(3.5, 2.0, 1.0))
    for part in ["book/03-rank.ipynb", "cell 6", "# the sweep", "360 s", "execute.timeout", "profile cpu",
                 "90 s", "less loaded machine", "3.5", "--cell-timeout 720", "PROFILE=fast", "profile.pick"]:
        assert part in text, (part, text)
    # with the limit raised for one build, the rule is still a quarter of _config.yml's limit
    raised = build_book.timeout_advice("book/03-rank.ipynb", 6, "sweep = run(plan)", 720, "cpu", sizing_limit=360)
    assert "limit of 720 s" in raised and "more than 90 s" in raised, raised
    # in the fast profile, building the fast profile is no advice
    assert "PROFILE=fast" not in build_book.timeout_advice("book/03-rank.ipynb", 6, "x", 360, "fast")


def test_cell_timeout_option_overrides_the_limit_of_one_build(tmp_path):
    default = yaml.safe_load(build_book.write_profile_config("cpu", tmp_path).read_text())
    raised = yaml.safe_load(build_book.write_profile_config("cpu", tmp_path, cell_timeout=720).read_text())
    assert default["execute"]["timeout"] == build_book.execution_settings()["timeout"]
    assert raised["execute"]["timeout"] == 720


def test_build_script_help_lists_the_sizing_and_timeout_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_book.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--check-sizing" in out and "--cell-timeout" in out


# The cell times of the last cpu build on a quiet 2-core machine, kept in the repository so that a clean clone
# (CI) checks every chapter whose code has not changed since; copy a quiet build's _build/cell-times.cpu.json here
RECORDED_CELL_TIMES = ROOT / "benchmarks" / "out" / "cell-times.cpu.json"


def test_recorded_chapter_sizing():
    """The last cpu build on this machine (or, in a clean clone, the quiet build kept in the repository):
    every chapter's slowest cell within a quarter of the per-cell limit."""
    times = build_book.cell_times_path(ROOT / "_build", "cpu")
    if not times.is_file():
        times = RECORDED_CELL_TIMES
    if not times.is_file():
        pytest.skip(f"no cpu build has run in this checkout ({_rel(times)} is missing); `make book` records the "
                    "cell times this test checks")
    limit = build_book.execution_settings()["timeout"]
    report = build_book.check_sizing(times, limit)
    if not report.checked:
        pytest.skip(f"every chapter's code changed since its times were recorded in {_rel(times)}; rebuild with `make book`")
    assert report.ok, "\n".join(report.problems)


@pytest.mark.slow
def test_execute_notebooks_records_cell_times_and_names_a_timeout(tmp_path, monkeypatch, capsys):
    """Executes two tiny notebooks in a kernel: the times are recorded, Jupyter Book's cache finds the
    executed notebook, and a cell past the limit stops the build with the chapter and the cell named."""
    from jupyter_cache import get_cache

    monkeypatch.setattr(build_book, "ROOT", tmp_path)
    (tmp_path / "book").mkdir()
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    quick = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# q"),
                                            nbformat.v4.new_code_cell("import os\nprint(os.environ['BOOK_TEST'])")],
                                     metadata={"kernelspec": kernelspec})
    stuck = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                            nbformat.v4.new_code_cell("import time\ntime.sleep(60)")],
                                     metadata={"kernelspec": kernelspec})
    nbformat.write(quick, tmp_path / "book" / "01-quick.ipynb")
    nbformat.write(stuck, tmp_path / "book" / "02-stuck.ipynb")
    cache, times = tmp_path / "_build" / "cache", tmp_path / "_build" / "cell-times.fast.json"
    env = dict(os.environ, BOOK_TEST="passed to the kernel")

    assert build_book.execute_notebooks([tmp_path / "book" / "01-quick.ipynb"], cache, env, "fast", times, 60)
    out = capsys.readouterr().out
    assert re.search(r"book/01-quick\.ipynb +[\d.]+ s  executed now; slowest cell 1", out), out
    recorded = json.loads(times.read_text())["notebooks"]["book/01-quick.ipynb"]
    assert [c["index"] for c in recorded["cells"]] == [1] and recorded["cells"][0]["first_line"] == "import os"
    # what myst-nb does in the build: match the source notebook in the cache, outputs included
    _, merged = get_cache(str(cache)).merge_match_into_notebook(nbformat.read(tmp_path / "book" / "01-quick.ipynb", 4))
    assert merged.cells[1].outputs[0]["text"] == "passed to the kernel\n"
    # a second build takes it from the cache
    assert build_book.execute_notebooks([tmp_path / "book" / "01-quick.ipynb"], cache, env, "fast", times, 60)
    assert "from cache" in capsys.readouterr().out

    assert not build_book.execute_notebooks([tmp_path / "book" / "02-stuck.ipynb"], cache, env, "fast", times, 2)
    err = capsys.readouterr().err
    assert "TIMEOUT in book/02-stuck.ipynb, cell 1" in err and "`import time`" in err and "2 s" in err, err
