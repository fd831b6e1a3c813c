"""The first cell of every chapter and exercise, run as Colab runs it: a runtime with its own, older
stack preinstalled (here transformers 4.57 with its tokenizers and huggingface_hub), a ``google.colab``
module in ``sys.modules``, and the course installed by the cell's ``%pip install``.

- A runtime that had already imported transformers gets one line asking for a restart, naming the
  upgrade, and the notebook stops there.
- A fresh runtime (nothing imported yet) installs, says nothing about restarting, and picks its profile.

The GitHub address in the cell is replaced by this checkout (this machine reaches only the package index);
everything else in the cell runs as written. The old stack comes from the package index.
"""

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import lora_book  # noqa: E402

OLD_STACK = "transformers==4.57.1"  # with the tokenizers and huggingface_hub it requires


def _template() -> tuple[str, str]:
    url, branch = lora_book.repository_from_book_config(ROOT / "_config.yml")
    return lora_book.setup_cell_source(url, branch), f"lora-course @ git+{url}@{branch}"


def test_every_chapter_and_exercise_starts_with_the_one_setup_cell():
    cell, _ = _template()
    notebooks = [*sorted((ROOT / "book").glob("*.ipynb")), *sorted((ROOT / "exercises").glob("*/*.ipynb"))]
    assert len(notebooks) >= 20
    for path in notebooks:
        assert lora_book.first_code_cell(json.loads(path.read_text())) == cell, path.relative_to(ROOT)
    assert "check_runtime()" in cell and "current_profile()" in cell


RUN_CELL = textwrap.dedent('''
    import sys
    sys.path.insert(0, {fake!r})
    import google.colab  # what Colab has imported before any cell runs
    {before}
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    result = shell.run_cell({cell!r})
    print("ERROR:", type(result.error_in_exec).__name__ if result.error_in_exec else None)
''')


@pytest.mark.slow
def test_the_setup_cell_in_a_simulated_colab_runtime(tmp_path):
    venv = tmp_path / "colab-runtime"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # what the runtime has preinstalled: torch, numpy, IPython... (this project's environment, reused), and an
    # older transformers stack in the runtime's own site-packages, which comes first on its path
    Path(site, "runtime-stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    old = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", OLD_STACK],
                         capture_output=True, text=True)
    if old.returncode != 0:
        pytest.skip(f"the package index did not give {OLD_STACK}: {old.stderr[-300:]}")
    fake = tmp_path / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s module."""\n')
    cell, spec = _template()
    cell = cell.replace(spec, str(ROOT))  # this checkout instead of GitHub

    def run(before: str) -> str:
        script = RUN_CELL.format(fake=str(fake), before=before, cell=cell)
        done = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=900, cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LORA_COURSE_PROFILE": "",
                                   "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        return done.stdout + done.stderr

    # a session that had imported the old transformers: the install upgrades it, so restart
    output = run("import transformers; assert transformers.__version__.startswith('4.'), transformers.__version__")
    assert "Restart the runtime (Runtime > Restart session)" in output, output[-3000:]
    assert "transformers 4.57.1 -> 5." in output, output[-3000:]
    assert "ERROR: SystemExit" in output and "profile '" not in output  # it stopped before the profile
    # after the restart: a fresh process, nothing imported; the cell goes through and picks the profile
    output = run("")
    assert "Restart the runtime" not in output, output[-3000:]
    assert "profile 'cpu'" in output and "ERROR: None" in output, output[-3000:]
