"""Seeded, cached language identification (langdetect) for the data layer.

langdetect samples n-grams at random; a fixed seed makes every verdict reproducible, so a source loads to the
same records on every run and machine. eval/ has its own wrapper (eval/ifeval/langid.py) that data/ may not
import; this is the one data/ uses.
"""

from __future__ import annotations

from functools import lru_cache

from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException

DetectorFactory.seed = 0


@lru_cache(maxsize=16384)
def detect_language(text: str) -> str | None:
    """The language code langdetect assigns to `text` (ISO 639-1, e.g. `fi`; `zh-cn` for Chinese), or None when
    it cannot decide (no letters: digits, punctuation, emoji only).

    Text in capitals only is lowercased first: langdetect's n-gram profiles are lowercase-heavy and misjudge
    shouting (Finnish in capitals comes out as German)."""
    try:
        return detect(text.lower() if text.isupper() else text)
    except LangDetectException:
        return None


def base_code(lang: str) -> str:
    """The primary subtag, lowercased: `zh-cn` -> `zh`, `en_US` -> `en`, `fi` -> `fi`."""
    return lang.replace("_", "-").split("-", 1)[0].lower()


def is_language(text: str, lang: str) -> bool:
    """Whether langdetect finds `text` to be in `lang` (compared by primary subtag). Text it cannot classify is in
    no language: False."""
    detected = detect_language(text)
    return detected is not None and base_code(detected) == base_code(lang)
