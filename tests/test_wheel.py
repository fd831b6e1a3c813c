"""The path a user arrives by: build the wheel and the sdist (README, "The package"), install the wheel into a
fresh virtual environment outside the repository, and from a folder where the checkout cannot be imported run
the command and the README's Python example with the tiny model.

No network: the build uses this environment's setuptools (--no-isolation), the new environment reuses the
installed dependencies through a .pth file (only the wheel itself is installed, --no-deps), and the tiny model
is generated locally into a temporary LORA_COURSE_CACHE.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import lora_course

ROOT = Path(__file__).resolve().parent.parent
TINY = "lora-course/tiny-random-llama"
VERSION = lora_course.__version__
# What the wheel must not carry: the repository's other folders
NOT_SHIPPED = ("tests/", "book/", "solutions/", "exercises/", "autograder/", "benchmarks/", "scripts/", "examples/")


def _package_files(folder: str) -> list[str]:
    """Every file of lora_course/<folder> in the checkout, as wheel paths."""
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "lora_course" / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """``python -m build`` as the README says, offline: the sdist, then the wheel built from the sdist."""
    # Build from a copy of what the build reads: setuptools writes build/ and *.egg-info into its source tree.
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(ROOT / "lora_course", source / "lora_course", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 0, f"python -m build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return {"wheel": out / f"lora_course-{VERSION}-py3-none-any.whl", "sdist": out / f"lora_course-{VERSION}.tar.gz"}


def test_readme_installs_the_wheel_that_python_m_build_makes():
    text = (ROOT / "README.md").read_text()
    section = text.split("## The package", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks, "README's 'The package' section has no bash block"
    commands = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.split("#")[0].strip()]
    assert commands == ["python -m build", "pip install dist/lora_course-*.whl"], commands


def test_build_gives_the_wheel_and_the_sdist(dist):
    assert dist["wheel"].is_file() and dist["sdist"].is_file()
    with tarfile.open(dist["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "lora_course/__init__.py", "lora_course/py.typed"} <= names
    assert not [n for n in names if n.startswith(NOT_SHIPPED)], "the sdist carries the repository's other folders"


def test_wheel_holds_the_data_the_assets_and_py_typed(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    bundled = _package_files("data/bundled")
    assets = _package_files("assets")
    assert bundled and assets
    missing = [n for n in [*bundled, *assets, "lora_course/py.typed"] if n not in names]
    assert not missing, f"missing from the wheel: {missing}"
    assert not [n for n in names if n.startswith(NOT_SHIPPED)], "the wheel carries the repository's other folders"


def test_wheel_metadata_carries_the_version_and_the_urls(dist):
    wheel = zipfile.ZipFile(dist["wheel"])
    metadata = wheel.read(f"lora_course-{VERSION}.dist-info/METADATA").decode()
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    for label in ("Homepage", "Documentation", "Source", "Issues"):
        assert f"Project-URL: {label}, " in metadata
    for version in ("3.10", "3.11", "3.12"):
        assert f"Classifier: Programming Language :: Python :: {version}" in metadata


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh virtual environment outside the repository with the wheel installed and nothing else: the
    dependencies come from this environment's site-packages, named in a .pth file."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # Path lines only: the .pth files inside those folders (this checkout's editable install) are not run.
    (site / "_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    # this environment's pip installs into the new one (--python), so the new one needs no pip of its own
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                             "--quiet", str(dist["wheel"])], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return where


def _run(venv: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a program of the new environment from a folder outside the repository, with no way to the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               LORA_COURSE_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONNOUSERSITE="1")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    result = subprocess.run(list(args), cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_the_command_runs_from_the_wheel(venv, tmp_path):
    command = str(venv / "bin" / "lora-course")
    assert Path(command).is_file(), "the wheel installed no lora-course command"
    assert "params" in _run(venv, tmp_path, command, "--help").stdout
    assert _run(venv, tmp_path, command, "--version").stdout.strip() == f"lora-course {VERSION}"
    assert "trainable parameters" in _run(venv, tmp_path, command, "params", TINY).stdout
    assert "total" in _run(venv, tmp_path, command, "memory", TINY).stdout


EXAMPLE = textwrap.dedent("""
    import importlib.metadata
    import json

    import torch
    from peft import PeftModel

    import lora_course
    from lora_course.data import Collator, load_bundled, tokenize_dataset
    from lora_course.lora import LoraSettings, inject_lora, save_adapter
    from lora_course.models import load_model
    from lora_course.train import TrainConfig, train

    model, tokenizer = load_model("lora-course/tiny-random-llama", device="cpu")
    inject_lora(model, LoraSettings(r=4, alpha=8))
    records = load_bundled("instructions", limit=16)
    examples, n_truncated = tokenize_dataset(records, tokenizer, sequence_length=64)
    result = train(model, examples, Collator(tokenizer.pad_token_id),
                   TrainConfig(micro_batch_size=4, max_steps=3, learning_rate=1e-2, progress=False))
    save_adapter(model, "adapter")

    fresh, _ = load_model("lora-course/tiny-random-llama", device="cpu")
    loaded = PeftModel.from_pretrained(fresh, "adapter").eval()
    x = torch.tensor([examples[0].input_ids])
    with torch.no_grad():
        difference = (loaded(x).logits - model.eval()(x).logits).abs().max().item()
    print(json.dumps({"file": lora_course.__file__, "version": lora_course.__version__,
                      "distribution": importlib.metadata.version("lora-course"), "records": len(records),
                      "steps": result.steps, "loss": result.final_train_loss, "peft": type(loaded).__name__,
                      "difference": difference}))
""")


def test_the_readme_example_runs_from_the_wheel(venv, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(EXAMPLE)
    out = _run(venv, tmp_path, str(venv / "bin" / "python"), str(script)).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(venv.resolve()), report["file"]
    assert report["version"] == report["distribution"] == VERSION
    assert report["records"] == 16 and report["steps"] == 3 and report["loss"] is not None
    assert (tmp_path / "work" / "adapter" / "adapter_config.json").is_file()
    # PEFT loads the trained adapter onto a fresh base and computes what the trained model computes
    assert report["peft"] == "PeftModelForCausalLM"
    assert report["difference"] < 1e-4, report
