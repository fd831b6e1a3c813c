"""Named evaluation tasks on the bundled data (offline) — the ``--task`` of ``lora-course eval``.

instructions: exact match and parser-based match of generated answers.
sentiment: the reply word as a label; accuracy, per-class and macro precision/recall/F1, confusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lora_course.data import (
    SENTIMENT_LABELS,
    answer_matches,
    exact_match,
    load_bundled,
    review_messages,
)
from lora_course.errors import SettingsError
from lora_course.evaluate.generation import generate
from lora_course.evaluate.metrics import classification_report


@dataclass
class TaskResult:
    task: str
    metrics: dict
    records: list[dict] = field(default_factory=list)  # per example: prompt, reply, reference, correct

    @property
    def correct(self) -> list[bool]:
        return [r["correct"] for r in self.records]

    def to_dict(self) -> dict:
        return {"task": self.task, "metrics": self.metrics, "records": self.records}


def _label_of(reply: str) -> str | None:
    words = reply.lower().replace(".", " ").replace("!", " ").split()
    return next((w for w in words if w in SENTIMENT_LABELS), None)


def _instructions(model, tokenizer, limit, batch_size) -> TaskResult:
    records = load_bundled("instructions", "test", limit=limit)
    replies = generate(model, tokenizer, [r["messages"] for r in records], max_new_tokens=24, batch_size=batch_size)
    rows = [{"prompt": r["messages"][0]["content"], "reply": reply, "reference": r["answer"], "task": r["task"],
             "exact": exact_match(reply, r["answer"]), "correct": answer_matches(reply, r)}
            for r, reply in zip(records, replies)]
    n = len(rows)
    return TaskResult("instructions", {"exact_match": sum(r["exact"] for r in rows) / n,
                                       "parsed_match": sum(r["correct"] for r in rows) / n, "examples": n}, rows)


def _sentiment(model, tokenizer, limit, batch_size) -> TaskResult:
    records = load_bundled("sentiment", "test", limit=limit)
    prompts = [review_messages(r, with_label=False) for r in records]
    replies = generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=batch_size)
    predicted = [_label_of(reply) for reply in replies]
    rows = [{"prompt": r["text"], "reply": reply, "reference": r["label"], "predicted": p, "correct": p == r["label"]}
            for r, reply, p in zip(records, replies, predicted)]
    report = classification_report([r["label"] for r in records], predicted, SENTIMENT_LABELS)
    return TaskResult("sentiment", {**report, "examples": len(rows)}, rows)


TASKS = {"instructions": _instructions, "sentiment": _sentiment}


def evaluate_task(model, tokenizer, task: str, limit: int | None = None, batch_size: int = 16) -> TaskResult:
    if task not in TASKS:
        raise SettingsError(f"Unknown task {task!r}; available: {', '.join(TASKS)}.")
    return TASKS[task](model, tokenizer, limit, batch_size)
