"""Heuristic cleaning of translated records: each filter names the reason it removes an item for.

Filters, in the order an item's *first* reason is taken from (report.json's `removed_by_reason`):

| reason | what fails | judged on |
| --- | --- | --- |
| `empty_segment` | a segment with letters came back empty | each segment |
| `untranslated_segment` | a segment came back unchanged (>= `min_chars` letters outside inline code) | each segment |
| `scaffolding` | the stop marker, `SOURCE_LABEL:`, `TARGET_LABEL:` or a configured marker, absent from the original | each text |
| `repetition` | more than `max_repeats` consecutive copies of a word n-gram, or a gzip ratio below `min_gzip_ratio`, where the original has neither | text outside code |
| `length_ratio` | translated/original characters outside [min_ratio, max_ratio] | text outside code |
| `wrong_language` | langdetect probability of the target language below `min_prob` | text outside code |
| `identical_pair` | chosen and rejected became identical (they differed before) | the pair |

"Text outside code" drops fenced blocks and inline code spans: code is kept verbatim, so it says nothing
about the translation. Each filter is switched and tuned under `cleaning.*` (docs/config.md).
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from collections.abc import Sequence

from langdetect import DetectorFactory, detect_langs
from langdetect.lang_detect_exception import LangDetectException

from data.translate.config import CleaningConfig
from data.translate.segment import INLINE_CODE, strip_code

DetectorFactory.seed = 0  # langdetect samples at random; a fixed seed makes every verdict reproducible

REASONS = (
    "empty_segment",
    "budget_cut",
    "untranslated_segment",
    "scaffolding",
    "repetition",
    "length_ratio",
    "wrong_language",
    "identical_pair",
)
SNIPPET_CHARS = 160
WORD = re.compile(r"\w+")


@dataclasses.dataclass(frozen=True)
class TranslatedField:
    """One translated text with its original and the (source, translation) pair of each segment."""

    name: str
    original: str
    translated: str
    segments: tuple[tuple[str, str], ...] = ()
    cut: tuple[str, ...] = ()  # source segments whose translation ran into the token budget


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why an item is removed: the reason, the field, a measured detail and a snippet of the translation."""

    reason: str
    field: str
    detail: str
    snippet: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def count_letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


def target_probability(text: str, lang: str) -> float:
    """langdetect's probability that `text` is in `lang` (0.0 when it finds nothing to go on)."""
    try:
        return next((c.prob for c in detect_langs(text) if c.lang == lang), 0.0)
    except LangDetectException:
        return 0.0


def gzip_ratio(text: str) -> float:
    """Compressed / raw size of the UTF-8 text (natural text ~0.4-0.7, loops far less)."""
    raw = text.encode("utf-8")
    return len(gzip.compress(raw, mtime=0)) / len(raw) if raw else 1.0


def max_consecutive_copies(text: str, *, max_ngram: int) -> tuple[int, str, int]:
    """(most consecutive copies of any word n-gram with n <= max_ngram, that n-gram, character offset where the
    run starts); case-insensitive."""
    matches = list(WORD.finditer(text))
    words = [m.group(0).lower() for m in matches]
    best, best_gram, best_start = 1, "", 0
    for n in range(1, max_ngram + 1):
        run = 0
        for j in range(n, len(words)):
            if words[j] == words[j - n]:
                run += 1
                copies = 1 + run // n
                if copies > best:
                    best, best_gram = copies, " ".join(words[j - n + 1 : j + 1])
                    best_start = matches[j - run - n + 1].start()
            else:
                run = 0
    return best, best_gram, best_start


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class Cleaner:
    """Applies the enabled filters of a CleaningConfig to translated items."""

    def __init__(
        self,
        cfg: CleaningConfig,
        *,
        target_lang: str,
        markers: Sequence[str],
        equivalents: Sequence[Sequence[str]] = (),
    ) -> None:
        self.cfg = cfg
        self.target_lang = target_lang
        extra = list(cfg.scaffolding.markers)
        self.markers = tuple(dict.fromkeys(m for m in (*markers, *extra) if m.strip()))
        groups = [*cfg.scaffolding.equivalents, *equivalents]
        self.equivalents = [tuple(m.casefold() for m in group) for group in groups if group]

    def check(self, fields: Sequence[TranslatedField]) -> list[Problem]:
        """The problems of one item: at most one per reason (its first failing field), in REASONS order."""
        found: dict[str, Problem] = {}
        translated = [f for f in fields if f.original != f.translated or f.segments]
        for field in translated:
            for problem in self._field_problems(field):
                found.setdefault(problem.reason, problem)
        pair = self._pair_problem(fields)
        if pair is not None:
            found[pair.reason] = pair
        return [found[reason] for reason in REASONS if reason in found]

    def _field_problems(self, field: TranslatedField) -> list[Problem]:
        cfg, problems = self.cfg, []
        if cfg.empty.enabled:
            for source, target in field.segments:
                if not target.strip():
                    problems.append(
                        Problem("empty_segment", field.name, "empty translation", snippet(source))
                    )
                    break
        if cfg.budget_cut.enabled and field.cut:
            problems.append(
                Problem(
                    "budget_cut", field.name, "translation stopped at its token budget", snippet(field.cut[0])
                )
            )
        if cfg.untranslated.enabled:
            for source, target in field.segments:
                if _same(source, target) and count_letters(INLINE_CODE.sub("", source)) >= (
                    cfg.untranslated.min_chars
                ):
                    problems.append(
                        Problem("untranslated_segment", field.name, "segment unchanged", snippet(source))
                    )
                    break
        if cfg.scaffolding.enabled:
            original, translated = field.original.casefold(), field.translated.casefold()
            # a marker the original has (or one that translates it) may be in a correct translation
            allowed = {m for group in self.equivalents if any(m in original for m in group) for m in group}
            for marker in self.markers:
                folded = marker.casefold()
                if folded in translated and folded not in original and folded not in allowed:
                    problems.append(
                        Problem("scaffolding", field.name, f"contains {marker!r}", snippet(field.translated))
                    )
                    break
        original_text, translated_text = strip_code(field.original), strip_code(field.translated)
        if cfg.repetition.enabled:
            problem = self._repetition(field, original_text, translated_text)
            if problem is not None:
                problems.append(problem)
        if cfg.length_ratio.enabled:
            before, after = len(original_text.strip()), len(translated_text.strip())
            if before >= cfg.length_ratio.min_chars:
                ratio = after / before
                if not cfg.length_ratio.min_ratio <= ratio <= cfg.length_ratio.max_ratio:
                    problems.append(
                        Problem(
                            "length_ratio",
                            field.name,
                            f"ratio {ratio:.2f} ({after}/{before} chars)",
                            snippet(field.translated),
                        )
                    )
        if cfg.language.enabled and count_letters(translated_text) >= cfg.language.min_chars:
            prob = target_probability(translated_text, self.target_lang)
            if prob < cfg.language.min_prob:
                problems.append(
                    Problem(
                        "wrong_language",
                        field.name,
                        f"{self.target_lang} probability {prob:.2f}",
                        snippet(field.translated),
                    )
                )
        return problems

    def _repetition(self, field: TranslatedField, original: str, translated: str) -> Problem | None:
        cfg = self.cfg.repetition
        copies, gram, start = max_consecutive_copies(translated, max_ngram=cfg.max_ngram)
        if copies > cfg.max_repeats:
            before = max_consecutive_copies(original, max_ngram=cfg.max_ngram)[0]
            if copies > before:
                detail = f"{copies} consecutive copies of {snippet(gram, 40)!r}"
                shown = ("…" if start > 20 else "") + translated[max(0, start - 20) :]
                return Problem("repetition", field.name, detail, snippet(shown))
        text = translated.strip()
        if len(text) >= cfg.gzip_min_chars:
            ratio = gzip_ratio(text)
            if ratio < cfg.min_gzip_ratio and gzip_ratio(original.strip()) >= cfg.min_gzip_ratio:
                return Problem("repetition", field.name, f"gzip ratio {ratio:.2f}", snippet(field.translated))
        return None

    def _pair_problem(self, fields: Sequence[TranslatedField]) -> Problem | None:
        if not self.cfg.identical_pair.enabled:
            return None
        by_name = {f.name: f for f in fields}
        chosen, rejected = by_name.get("chosen"), by_name.get("rejected")
        if chosen is None or rejected is None:
            return None
        if chosen.translated.strip() == rejected.translated.strip() and (
            chosen.original.strip() != rejected.original.strip()
        ):
            return Problem("identical_pair", "chosen", "chosen == rejected", snippet(chosen.translated))
        return None
