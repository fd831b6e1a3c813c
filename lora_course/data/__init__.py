"""Data: chat formatting with the model's own template, prompt masking, padding and packing, lengths."""

from lora_course.data.answers import answer_matches, exact_match, extract_answer, parsed_match
from lora_course.data.batching import Collator, PackedCollator, PaddingFreeCollator, pack, padding_stats
from lora_course.data.corpus import load_shakespeare, markdown_to_text, text_blocks
from lora_course.data.chat import IGNORE_INDEX, Example, format_chat, format_prompt, split_prompt_response, tokenize_dataset
from lora_course.data.bundled import SENTIMENT_LABELS, load_bundled, review_messages
from lora_course.data.hub import HubDataUnavailable, load_alpaca, load_imdb
from lora_course.data.lengths import check_sequence_length, length_stats

__all__ = [
    "HubDataUnavailable", "SENTIMENT_LABELS", "load_alpaca", "load_imdb", "answer_matches", "exact_match", "extract_answer", "load_bundled", "parsed_match",
    "review_messages", "load_shakespeare", "markdown_to_text", "text_blocks",
    "Collator", "Example", "IGNORE_INDEX", "PackedCollator", "PaddingFreeCollator", "check_sequence_length", "format_chat", "format_prompt",
    "length_stats", "pack", "padding_stats", "split_prompt_response", "tokenize_dataset",
]
