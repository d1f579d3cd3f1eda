"""Seeded, cached language detection (langdetect) for the language and case checkers."""

from __future__ import annotations

from functools import lru_cache

from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException

# langdetect samples n-grams at random; a fixed seed makes every verdict reproducible.
DetectorFactory.seed = 0


@lru_cache(maxsize=16384)
def detect_language(text: str) -> str | None:
    """ISO 639-1 code langdetect assigns to ``text``, or None when it cannot decide.

    None covers langdetect's "no features in text" (digits, punctuation, emoji only); the
    reference counts such responses as following a language instruction, and so do we.
    """
    try:
        return detect(text)
    except LangDetectException:
        return None
