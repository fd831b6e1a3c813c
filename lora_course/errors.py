"""Every error a user can cause, as one family: ``CourseError`` and its kinds.

The ground floor of the package: it imports nothing from it, and every layer raises these for
mistakes a user can fix (a broken YAML, a missing file, a model that cannot be had, an adapter on
the wrong base, a resume that would silently train on other batches). The command line catches
``CourseError`` once and prints its message, which names the cause and the fix, without a traceback.

Each kind also derives from the built-in exception it used to be (``ValueError``, ``OSError``), so
code that caught those keeps working.
"""

from __future__ import annotations


class CourseError(Exception):
    """An error the user can fix. The message says what is wrong and, after "Fix:", what to do."""


class ConfigError(CourseError, ValueError):
    """A configuration that cannot run; the message lists every problem and how to fix it."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, list(problems)
        lines = [f"  - {p}" for p in self.problems]
        super().__init__(f"{source}: {len(self.problems)} problem(s) in the configuration:\n" + "\n".join(lines))


class DataError(CourseError, ValueError):
    """Training or evaluation data that cannot be read: a missing file, a file in the wrong format,
    a record without the fields its type needs, a hub data set this machine cannot reach."""


class ModelNotAvailableError(CourseError, OSError):
    """A model name that is neither a local path, reachable on the hub, nor available offline.

    The message lists every place that was tried, so the user can see which one to fix.
    """

    def __init__(self, name: str, tried: list[str], hint: str = ""):
        self.name = name
        self.tried = list(tried)
        lines = [f"Could not load model {name!r}. Tried, in order:"]
        lines += [f"  - {t}" for t in tried]
        lines.append(
            hint
            or "Fix: pass a local model directory, connect to the Hugging Face hub, or use one of the "
            "models available offline (lora_course.models.offline.OFFLINE_MODELS)."
        )
        super().__init__("\n".join(lines))


class SettingsError(CourseError, ValueError):
    """A setting with a value the library cannot use: a rank of 0, an unknown optimizer or precision."""


class TargetModuleError(CourseError, ValueError):
    """LoRA target modules that the model does not have (or that are not linear layers)."""


class AdapterFormatError(CourseError, ValueError):
    """An adapter folder that is missing, incomplete, corrupt, or does not fit the model."""


class BaseModelMismatchError(AdapterFormatError):
    """The adapter was trained on another base model than the one it is being loaded onto."""


class MergeError(CourseError, ValueError):
    """A merge that would corrupt the model: the merged weights are not finite, or the base is quantized."""


class ResumeError(CourseError, ValueError):
    """A resume that cannot continue the run it names: no checkpoint, or a changed configuration."""


class OutputExistsError(CourseError, FileExistsError):
    """An output folder that already holds something this command would overwrite."""


class SubmissionError(CourseError, ValueError):
    """A submission (or a folder of them) the grader cannot read; the message says what to hand in."""


class GradingSetupError(CourseError, ValueError):
    """The instructor's side: an unknown assignment, a course folder that is not one, an output inside
    the submissions."""


class UsageError(CourseError, ValueError):
    """A command-line value the command cannot use (a size it cannot parse, say)."""
