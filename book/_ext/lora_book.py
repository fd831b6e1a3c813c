"""Sphinx extension for the course book.

* ``{colab}`Title <exercises/02-lora-layer/02-lora-layer.ipynb>``: a link that opens a notebook of
  the repository in Colab. The address is built from ``repository:`` in ``_config.yml`` (the one place
  the repository is named). A notebook that is not in the working tree is shown as plain text marked
  "not released yet" (an exercise whose notebook has not been generated) instead of a dead link.
* Every chapter's first code cell must be the setup cell (Colab install from the repository, then the
  execution profile): a chapter whose first cell differs is a build warning, which fails the build.

Run ``python book/_ext/lora_book.py`` to print the setup cell, or ``--write NOTEBOOK...`` to put it
into notebooks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLAB = "https://colab.research.google.com"

SETUP_CELL = '''\
# Setup. In Colab: install the course package from its repository (a restart is asked for if needed).
import sys

if "google.colab" in sys.modules:
    %pip install --quiet "lora-course @ git+{repository_url}@{branch}"
    from lora_course.colab import check_runtime

    check_runtime()

from lora_course.profiles import current_profile

# fast | cpu | gpu, from LORA_COURSE_PROFILE (default: gpu with CUDA, else cpu)
profile = current_profile()
print(profile)'''


def setup_cell_source(repository_url: str, branch: str) -> str:
    return SETUP_CELL.format(repository_url=repository_url.rstrip("/"), branch=branch)


def colab_url(repository_url: str, branch: str, path: str) -> str:
    github = repository_url.rstrip("/").removeprefix("https://github.com/")
    return f"{COLAB}/github/{github}/blob/{branch}/{path.lstrip('/')}"


def first_code_cell(notebook: dict) -> str | None:
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            return "".join(src) if isinstance(src, list) else src
    return None


def repository_from_book_config(config_path: str | Path) -> tuple[str, str]:
    """(url, branch) from ``repository:`` in a Jupyter Book ``_config.yml``."""
    import yaml

    repo = (yaml.safe_load(Path(config_path).read_text()) or {}).get("repository") or {}
    if not repo.get("url"):
        raise ValueError(f"{config_path} has no repository.url. Fix: name the course repository there.")
    return repo["url"], repo.get("branch", "main")


# --- Sphinx side -----------------------------------------------------------------------------------

def _repository(app) -> tuple[str, str]:
    options = app.config.html_theme_options or {}
    url = options.get("repository_url")
    if not url:
        raise ValueError("repository.url is missing from _config.yml; the Colab links need it.")
    return url, options.get("repository_branch") or "main"


def _colab_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    from docutils import nodes
    from sphinx.util.nodes import split_explicit_title

    env = inliner.document.settings.env
    has_title, title, path = split_explicit_title(text)
    path = path.strip()
    title = title if has_title else Path(path).stem
    if not path.endswith(".ipynb"):
        msg = inliner.reporter.warning(f"{{colab}} needs a .ipynb path (Colab opens only notebooks), got {path!r}",
                                       line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    url, branch = _repository(env.app)
    if not (Path(env.app.srcdir) / path).is_file():
        return [nodes.Text(f"{title} (not released yet)")], []
    ref = nodes.reference(rawtext, "", refuri=colab_url(url, branch, path), classes=["colab-link"])
    ref += nodes.inline("", "Open in Colab: ", classes=["colab-link-label"])
    ref += nodes.literal(title, title)
    return [ref], []


def _check_setup_cells(app, env, docnames):
    """Warn (so -W fails the build) for a chapter notebook whose first code cell is not the setup cell."""
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    url, branch = _repository(app)
    expected = setup_cell_source(url, branch)
    for docname in sorted(env.found_docs):
        path = Path(env.doc2path(docname))
        if path.suffix != ".ipynb":
            continue
        found = first_code_cell(json.loads(path.read_text()))
        if found != expected:
            log.warning(f"{path.name}: the first code cell is not the book's setup cell (Colab install + profile). "
                        f"Fix: python book/_ext/lora_book.py --write {path.relative_to(app.srcdir)}",
                        location=docname, type="lora_book", subtype="setup_cell")


def _add_substitutions(app, config):
    """``{{ repository_url }}`` in Markdown pages, from the same single source as the buttons."""
    url, branch = _repository(app)
    config.myst_substitutions = {**(config.myst_substitutions or {}), "repository_url": url, "repository_branch": branch}


def setup(app):
    app.add_role("colab", _colab_role)
    app.connect("config-inited", _add_substitutions)
    app.connect("env-before-read-docs", _check_setup_cells)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


# --- command line: print or write the setup cell -----------------------------------------------------

def _write(paths: list[str], config: Path) -> None:
    url, branch = repository_from_book_config(config)
    source = setup_cell_source(url, branch)
    for p in paths:
        nb = json.loads(Path(p).read_text())
        cells = nb["cells"]
        first = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), None)
        cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                "source": source.splitlines(keepends=True)}
        if first is None:
            cells.insert(0, cell)
        else:
            cells[first]["source"] = cell["source"]
        Path(p).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"setup cell written to {p}")


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    args = sys.argv[1:]
    if args[:1] == ["--write"]:
        _write(args[1:], root / "_config.yml")
    else:
        print(setup_cell_source(*repository_from_book_config(root / "_config.yml")))
