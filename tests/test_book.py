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
