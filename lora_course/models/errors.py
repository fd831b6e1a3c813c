"""Kept for imports written before the one error family: the class lives in ``lora_course.errors``."""

from lora_course.errors import ModelNotAvailableError

__all__ = ["ModelNotAvailableError"]
