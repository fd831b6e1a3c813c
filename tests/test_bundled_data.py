"""The bundled data sets: reproducible from their script, the promised sizes, no train/test overlap."""

import pytest

from lora_course.data import answer_matches, exact_match, extract_answer, load_bundled, parsed_match
from lora_course.data import generate_bundled
from lora_course.data.bundled import BUNDLED


def test_files_are_exactly_what_the_seeded_script_generates(tmp_path):
    for path in generate_bundled.write(tmp_path):
        assert path.read_bytes() == (BUNDLED / path.name).read_bytes(), f"{path.name} differs from its generator"


@pytest.mark.parametrize("name, train, test", [("instructions", 2000, 200), ("sentiment", 2000, 500)])
def test_sizes_and_no_overlap(name, train, test):
    a, b = load_bundled(name, "train"), load_bundled(name, "test")
    assert (len(a), len(b)) == (train, test)
    key = (lambda r: r["messages"][0]["content"]) if name == "instructions" else (lambda r: r["text"])
    assert not {key(r) for r in a} & {key(r) for r in b}
    assert len({key(r) for r in a}) == train


def test_instruction_records_are_well_formed_and_diverse():
    records = load_bundled("instructions", "train")
    assert len({r["task"] for r in records}) >= 12
    for r in records:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert r["messages"][1]["content"] == r["answer"]


def test_sentiment_is_balanced_and_not_decided_by_one_keyword():
    records = load_bundled("sentiment", "train")
    positive = sum(r["label"] == "positive" for r in records)
    assert 0.4 < positive / len(records) < 0.6
    with_not = [r for r in records if " not " in r["text"]]
    assert {r["label"] for r in with_not} == {"positive", "negative"}


def test_unknown_set_is_a_clear_error():
    with pytest.raises(ValueError, match="instructions/train"):
        load_bundled("alpaca", "train")


def test_answer_checking():
    assert exact_match(" 3000. ", "3000") and not exact_match("It is 3000", "3000")
    assert extract_answer("Let me think.\nAnswer: Paris\nbecause...") == "Paris"
    assert parsed_match("Answer: 3000.0", "3000") and parsed_match("Paris.", "Paris")
    assert not parsed_match("The capital is not Paris, it is Lyon", "Paris")  # containment is not a match
    record = {"answer": "tenalp"}
    assert answer_matches("tenalp", record) and not answer_matches("planet", record)
