"""Configuration of the translation's pure parts: the few-shot prompt (data/translate/prompt.py) and the cleaning
filters (data/translate/clean.py). Plain dataclasses, documented field by field like data/config.py; the
translation job (eval/translation/) holds them as sections of its root config."""

from __future__ import annotations

import dataclasses

from data.config import option
from data.errors import ConfigError


@dataclasses.dataclass
class TranslationExample:
    """One few-shot example: a line of text and its translation."""

    source: str = option(help="Text in the source language (one line).")
    target: str = option(help="Its translation (one line).")


@dataclasses.dataclass
class TranslatePromptConfig:
    """The few-shot completion prompt: header, examples as `SOURCE_LABEL: text` / `TARGET_LABEL: text` lines
    each followed by the stop marker, then the segment to translate (see data/translate/prompt.py)."""

    header: str = option(
        "Translate the following texts from {source} to {target}. Keep code, names, numbers and markdown "
        "formatting unchanged.",
        help="First paragraph of every prompt; {source} and {target} are replaced by the language names.",
    )
    examples: list[TranslationExample] | None = option(
        None,
        help="Few-shot pairs [{source, target}, ...]; null = sisu's built-in English->Finnish examples "
        "(required for any other language pair).",
    )
    source_label: str | None = option(
        None, help="Label of the source line; null = the source language's name (English)."
    )
    target_label: str | None = option(
        None, help="Label of the translation line; null = the target language's name (Finnish)."
    )
    stop: str = option(
        "###",
        help="Marker after each example; decoding stops at it and at a line break (segments are one line).",
    )
    cache_prefix: bool = option(
        True,
        help="Encode the header and examples once and reuse their KV cache for every segment, so each prompt "
        "prefills only its segment; false = every prompt in full.",
    )

    def check(self) -> None:
        if not self.stop.strip() or "\n" in self.stop:
            raise ConfigError(f"prompt.stop must be a non-empty marker without line breaks, got {self.stop!r}")
        for i, example in enumerate(self.examples or []):
            if "\n" in example.source or "\n" in example.target:
                raise ConfigError(f"prompt.examples.{i}: source and target must be single lines")


@dataclasses.dataclass
class FilterSwitch:
    """A cleaning filter without thresholds."""

    enabled: bool = option(True, help="Apply this filter.")


@dataclasses.dataclass
class LanguageFilterConfig:
    """Remove items whose translated text (outside code) is not in the target language."""

    enabled: bool = option(True, help="Apply this filter (reason `wrong_language`).")
    min_prob: float = option(0.5, help="Minimum langdetect probability of the target language.")
    min_chars: int = option(
        30, help="Texts with fewer letters outside code are not checked (langdetect is unreliable on them)."
    )

    def check(self) -> None:
        if not 0.0 <= self.min_prob <= 1.0:
            raise ConfigError(f"min_prob must be in [0, 1], got {self.min_prob}")


@dataclasses.dataclass
class LengthRatioFilterConfig:
    """Remove items where a translated text is much shorter or longer than its original (outside code)."""

    enabled: bool = option(True, help="Apply this filter (reason `length_ratio`).")
    min_ratio: float = option(0.5, help="Smallest allowed translated/original character ratio.")
    max_ratio: float = option(2.0, help="Largest allowed translated/original character ratio.")
    min_chars: int = option(30, help="Originals with fewer characters outside code are not checked.")

    def check(self) -> None:
        if not 0.0 <= self.min_ratio < self.max_ratio:
            raise ConfigError(f"need 0 <= min_ratio < max_ratio, got {self.min_ratio}, {self.max_ratio}")


@dataclasses.dataclass
class RepetitionFilterConfig:
    """Remove items whose translation loops (a repetition the original does not have)."""

    enabled: bool = option(True, help="Apply this filter (reason `repetition`).")
    max_repeats: int = option(
        3, help="Most consecutive copies of a word n-gram (n <= max_ngram) a translation may contain."
    )
    max_ngram: int = option(8, help="Longest n-gram (in words) checked for consecutive repeats.")
    min_gzip_ratio: float = option(
        0.25, help="Smallest allowed gzip compressed/raw size ratio (loops compress very well)."
    )
    gzip_min_chars: int = option(200, help="Texts shorter than this are not checked by the gzip ratio.")

    def check(self) -> None:
        if self.max_repeats < 1 or self.max_ngram < 1:
            raise ConfigError("max_repeats and max_ngram must be >= 1")


@dataclasses.dataclass
class ScaffoldingFilterConfig:
    """Remove items whose translation echoes the prompt (not present in the original)."""

    enabled: bool = option(
        True,
        help="Apply this filter (reason `scaffolding`); the stop marker and `LABEL:` of both languages are "
        "always checked.",
    )
    markers: list[str] = option(
        help="Further strings (case-insensitive) that betray prompt scaffolding.",
        factory=lambda: ["Translate the following", "Translate into", "Translation:", "Käännös:"],
    )
    equivalents: list[list[str]] = option(
        help="Groups of markers that translate each other: when the original contains one of a group, the "
        "translation may contain any of them (a correct 'Käännös:' for 'Translation:' is not scaffolding). The "
        "prompt's two labels (e.g. 'English:', 'Finnish:') always form a group.",
        factory=lambda: [["Translation:", "Käännös:"]],
    )


@dataclasses.dataclass
class UntranslatedFilterConfig:
    """Remove items with a segment returned unchanged (outside code)."""

    enabled: bool = option(True, help="Apply this filter (reason `untranslated_segment`).")
    min_chars: int = option(
        20, help="Segments with fewer letters (outside inline code) may stay unchanged (names, short terms)."
    )


@dataclasses.dataclass
class CleaningConfig:
    """Filters applied to every translated item; each removal is counted by reason in report.json."""

    empty: FilterSwitch = option(
        help="Reason `empty_segment`: a segment with letters translated to nothing.", factory=FilterSwitch
    )
    budget_cut: FilterSwitch = option(
        help="Reason `budget_cut`: a segment's translation stopped at its token budget "
        "(segments.length_factor x its tokens + segments.extra_new_tokens, at most generation.max_new_tokens).",
        factory=FilterSwitch,
    )
    untranslated: UntranslatedFilterConfig = option(
        help="Reason `untranslated_segment`.", factory=UntranslatedFilterConfig
    )
    scaffolding: ScaffoldingFilterConfig = option(
        help="Reason `scaffolding`.", factory=ScaffoldingFilterConfig
    )
    repetition: RepetitionFilterConfig = option(help="Reason `repetition`.", factory=RepetitionFilterConfig)
    length_ratio: LengthRatioFilterConfig = option(
        help="Reason `length_ratio`.", factory=LengthRatioFilterConfig
    )
    language: LanguageFilterConfig = option(help="Reason `wrong_language`.", factory=LanguageFilterConfig)
    identical_pair: FilterSwitch = option(
        help="Reason `identical_pair`: preference pairs whose chosen and rejected became identical.",
        factory=FilterSwitch,
    )
