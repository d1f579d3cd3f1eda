"""The 25 IFEval instruction checkers.

Each instruction id maps to an :class:`InstructionSpec`: which kwargs it takes, how they are
validated, and a builder that turns (kwargs, :class:`Settings`) into a ``check(response) -> bool``.
In English (and under ``compat="lumiopen"``) every check reproduces the reference
implementation's verdicts; the language-aware differences for other benchmarks are confined to
the places named in :class:`Settings` and listed in the README.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .langid import detect_language
from .text import TextTools, count_words

Check = Callable[[str], bool]

RELATIONS = ("less than", "at least")

ENGLISH_CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
FINNISH_CONSTRAINED_OPTIONS = ("Vastaukseni on kyllä.", "Vastaukseni on ei.", "Vastaukseni on ehkä.")


@dataclass(frozen=True)
class Settings:
    """How the checkers behave in one scoring run.

    ``case_language``: the language the change_case checks demand (the reference demands "en").
    ``fold_case_for_detection``: detect the language on lower-cased text, so that an all-caps
    answer in a language other than English is still recognised (langdetect ignores all-caps
    words and misreads upper-case Finnish as German).
    ``constrained_options``: accepted answers for detectable_format:constrained_response.
    ``quote_open`` / ``quote_close``: accepted first and last characters for startend:quotation.
    """

    text: TextTools
    case_language: str = "en"
    fold_case_for_detection: bool = False
    constrained_options: tuple[str, ...] = ENGLISH_CONSTRAINED_OPTIONS
    quote_open: str = '"'
    quote_close: str = '"'

    def detect(self, text: str) -> str | None:
        return detect_language(text.lower() if self.fold_case_for_detection else text)


# --------------------------------------------------------------------------------------------------
# Kwarg validation.


def _require(kwargs: Mapping[str, Any], name: str) -> Any:
    if name not in kwargs:
        raise ValueError(f"missing kwarg {name!r}")
    return kwargs[name]


def _count(kwargs: Mapping[str, Any], name: str) -> int:
    value = _require(kwargs, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"kwarg {name!r} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"kwarg {name!r} must not be negative, got {value}")
    return value


def _relation(kwargs: Mapping[str, Any], name: str) -> str:
    value = _require(kwargs, name)
    if value not in RELATIONS:
        raise ValueError(f"kwarg {name!r} must be one of {RELATIONS}, got {value!r}")
    return value


def _text(kwargs: Mapping[str, Any], name: str) -> str:
    value = _require(kwargs, name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"kwarg {name!r} must be a non-empty string, got {value!r}")
    return value


def _text_list(kwargs: Mapping[str, Any], name: str) -> list[str]:
    value = _require(kwargs, name)
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"kwarg {name!r} must be a non-empty list of non-empty strings, got {value!r}")
    return list(value)


def _compare(actual: int, relation: str, threshold: int) -> bool:
    # "at most N" prompts are stored as "less than N+1"; only these two relations exist.
    return actual < threshold if relation == "less than" else actual >= threshold


def _pattern(source: str, flags: int = 0, *, before: str = "", after: str = "") -> re.Pattern[str]:
    """Compile ``before + source + after`` where ``source`` is a kwarg the reference treats as regex.

    The reference passes keywords and section markers to ``re`` unescaped (so "." matches any
    character); we do the same, and match ``source`` literally where the reference would crash.
    """
    try:
        return re.compile(before + source + after, flags)
    except re.error:
        return re.compile(before + re.escape(source) + after, flags)


# --------------------------------------------------------------------------------------------------
# Checkers. Each builder validates its kwargs and returns the check.


def _keywords_existence(kw: Mapping[str, Any], s: Settings) -> Check:
    patterns = [_pattern(k, re.IGNORECASE) for k in _text_list(kw, "keywords")]
    return lambda r: all(p.search(r) for p in patterns)


def _keywords_frequency(kw: Mapping[str, Any], s: Settings) -> Check:
    pattern = _pattern(_text(kw, "keyword").strip(), re.IGNORECASE)
    frequency, relation = _count(kw, "frequency"), _relation(kw, "relation")
    return lambda r: _compare(len(pattern.findall(r)), relation, frequency)


def _forbidden_words(kw: Mapping[str, Any], s: Settings) -> Check:
    # Whole words only (\b on both sides), unlike keywords:existence which matches substrings.
    words = sorted(set(_text_list(kw, "forbidden_words")))
    patterns = [_pattern(w, re.IGNORECASE, before=r"\b", after=r"\b") for w in words]
    return lambda r: not any(p.search(r) for p in patterns)


def _letter_frequency(kw: Mapping[str, Any], s: Settings) -> Check:
    letter = _require(kw, "letter")
    if isinstance(letter, str) and len(letter) != 1:
        letter = letter.strip()
    if not isinstance(letter, str) or len(letter) != 1:
        raise ValueError(f"kwarg 'letter' must be a single character, got {letter!r}")
    # Deliberate difference: the reference swaps a non-ASCII-letter target ("#", "!", "ä") for a
    # random letter; we count the character that was asked for.
    target = letter.lower()
    frequency, relation = _count(kw, "let_frequency"), _relation(kw, "let_relation")
    return lambda r: _compare(r.lower().count(target), relation, frequency)


def _response_language(kw: Mapping[str, Any], s: Settings) -> Check:
    language = _text(kw, "language")

    def check(r: str) -> bool:
        found = s.detect(r)
        return True if found is None else found == language

    return check


def _number_sentences(kw: Mapping[str, Any], s: Settings) -> Check:
    threshold, relation = _count(kw, "num_sentences"), _relation(kw, "relation")
    count_sentences = s.text.count_sentences
    return lambda r: _compare(count_sentences(r), relation, threshold)


_DIVIDER = re.compile(r"\s?\*\*\*\s?")


def _number_paragraphs(kw: Mapping[str, Any], s: Settings) -> Check:
    wanted = _count(kw, "num_paragraphs")

    def check(r: str) -> bool:
        parts = _DIVIDER.split(r)
        count = len(parts)
        for i, part in enumerate(parts):
            if not part.strip():
                # An empty piece is tolerated only before the first or after the last divider.
                if i in (0, len(parts) - 1):
                    count -= 1
                else:
                    return False
        return count == wanted

    return check


def _number_words(kw: Mapping[str, Any], s: Settings) -> Check:
    threshold, relation = _count(kw, "num_words"), _relation(kw, "relation")
    return lambda r: _compare(count_words(r), relation, threshold)


_FIRST_WORD_STOP = frozenset(".,?!'\"")


def _nth_paragraph_first_word(kw: Mapping[str, Any], s: Settings) -> Check:
    wanted = _count(kw, "num_paragraphs")
    nth = _count(kw, "nth_paragraph")
    if not 1 <= nth <= wanted:
        raise ValueError(f"kwarg 'nth_paragraph' must be between 1 and num_paragraphs ({wanted}), got {nth}")
    first_word = _text(kw, "first_word").lower()

    def check(r: str) -> bool:
        parts = r.split("\n\n")
        count = sum(1 for p in parts if p.strip())
        # The reference indexes the raw split (blank pieces included) with a count of non-blank ones.
        if nth > count:
            return False
        paragraph = parts[nth - 1].strip()
        if not paragraph:
            return False
        word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
        head = []
        for ch in word:
            if ch in _FIRST_WORD_STOP:
                break
            head.append(ch.lower())
        return count == wanted and "".join(head) == first_word

    return check


def _count_placeholders(text: str) -> int:
    r"""Non-overlapping ``[...]`` spans within one line, as ``re.findall(r"\[.*?\]")`` counts them.

    Written as a scan because the regex takes quadratic time on a long line of unmatched "[".
    """
    count = 0
    for line in text.split("\n"):
        start = line.find("[")
        while start != -1:
            end = line.find("]", start + 1)
            if end == -1:
                break
            count += 1
            start = line.find("[", end + 1)
    return count


def _number_placeholders(kw: Mapping[str, Any], s: Settings) -> Check:
    wanted = _count(kw, "num_placeholders")
    return lambda r: _count_placeholders(r) >= wanted


def _postscript(kw: Mapping[str, Any], s: Settings) -> Check:
    marker = _text(kw, "postscript_marker").strip()
    # The reference searches r"\s*" + marker + r".*$" (multiline) in the lower-cased response. Both
    # ends can match empty text, so that is a search for the marker alone, anywhere, not only at
    # a line start; searching for the marker alone also avoids quadratic time on long blank runs.
    if marker == "P.P.S":
        pattern = re.compile(r"p\.\s?p\.\s?s", re.MULTILINE)
    elif marker == "P.S.":
        pattern = re.compile(r"p\.\s?s\.", re.MULTILINE)
    else:
        pattern = _pattern(marker.lower(), re.MULTILINE)
    return lambda r: pattern.search(r.lower()) is not None


def _next_line_start(text: str, pos: int) -> int:
    newline = text.find("\n", pos)
    return len(text) + 1 if newline == -1 else newline + 1


def _count_bullets(text: str, marker: str) -> int:
    r"""Matches of ``^\s*\*[^\*].*$`` (marker "*") or ``^\s*-.*$`` (marker "-"), multiline.

    A linear re-statement of the reference's regexes (which are quadratic on long blank runs):
    from each line start, skip whitespace, newlines included; a bullet is a "*" followed by any
    character but "*" (even a newline), or a "-"; it extends to the end of its line.
    """
    n = len(text)
    count = 0
    line_start = 0
    while line_start <= n:
        q = line_start
        while q < n and text[q].isspace():
            q += 1
        if q < n and text[q] == marker and (marker == "-" or (q + 1 < n and text[q + 1] != "*")):
            count += 1
            rest = q + 1 if marker == "-" else q + 2
            end = text.find("\n", rest)
            end = n if end == -1 else end
            # The next match may start right at ``end`` only if that is itself a line start.
            line_start = end if end > 0 and text[end - 1] == "\n" else _next_line_start(text, end)
        else:
            # Every line start up to q leads to the same q; the next candidate is past it.
            line_start = _next_line_start(text, q)
    return count


def _number_bullet_lists(kw: Mapping[str, Any], s: Settings) -> Check:
    wanted = _count(kw, "num_bullets")
    # "* item" and "- item" lines count; "+ item" and "1. item" do not, "---" does.
    return lambda r: _count_bullets(r, "*") + _count_bullets(r, "-") == wanted


def _constrained_response(kw: Mapping[str, Any], s: Settings) -> Check:
    options = s.constrained_options
    # Substring test, case-sensitive: "My answer is yes." anywhere in the response passes.
    return lambda r: any(option in r.strip() for option in options)


_SINGLE_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


def _number_highlighted_sections(kw: Mapping[str, Any], s: Settings) -> Check:
    wanted = _count(kw, "num_highlights")

    def check(r: str) -> bool:
        # *x* and **x** are found by two independent scans and both count.
        found = sum(1 for h in _SINGLE_HIGHLIGHT.findall(r) if h.strip("*").strip())
        found += sum(1 for h in _DOUBLE_HIGHLIGHT.findall(r) if h[2:-2].strip())
        return found >= wanted

    return check


def _multiple_sections(kw: Mapping[str, Any], s: Settings) -> Check:
    splitter = _text(kw, "section_spliter").strip()
    wanted = _count(kw, "num_sections")
    # Case-sensitive: "Section 1" does not mark a section when the marker is "SECTION".
    pattern = _pattern(splitter, before=r"\s?", after=r"\s?\d+\s?")
    return lambda r: len(pattern.split(r)) - 1 >= wanted


def _json_format(kw: Mapping[str, Any], s: Settings) -> Check:
    def check(r: str) -> bool:
        body = r.strip()
        for fence in ("```json", "```Json", "```JSON", "```"):
            body = body.removeprefix(fence)
        body = body.removesuffix("```").strip()
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            return False
        return True

    return check


def _has_title(text: str) -> bool:
    r"""Whether ``re.findall(r"<<[^\n]+>>")`` finds a title that is not blank.

    On each line the regex can match at most once: from the first "<<" to the last ">>", if at
    least one character lies between them. A scan avoids the regex's quadratic backtracking.
    """
    for line in text.split("\n"):
        start = line.find("<<")
        if start == -1:
            continue
        end = line.rfind(">>")
        if end >= start + 3 and line[start : end + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


def _title(kw: Mapping[str, Any], s: Settings) -> Check:
    return _has_title


def _two_responses(kw: Mapping[str, Any], s: Settings) -> Check:
    def check(r: str) -> bool:
        parts = r.split("******")
        answers = []
        for i, part in enumerate(parts):
            if part.strip():
                answers.append(part)
            elif i not in (0, len(parts) - 1):
                return False
        return len(answers) == 2 and answers[0].strip() != answers[1].strip()

    return check


def _repeat_prompt(kw: Mapping[str, Any], s: Settings) -> Check:
    prefix = _text(kw, "prompt_to_repeat").strip().lower()
    return lambda r: r.strip().lower().startswith(prefix)


def _end_checker(kw: Mapping[str, Any], s: Settings) -> Check:
    ending = _text(kw, "end_phrase").strip().lower()
    return lambda r: r.strip().strip('"').lower().endswith(ending)


def _capital_word_frequency(kw: Mapping[str, Any], s: Settings) -> Check:
    threshold, relation = _count(kw, "capital_frequency"), _relation(kw, "capital_relation")
    tokens = s.text.word_tokens
    return lambda r: _compare(sum(1 for t in tokens(r) if t.isupper()), relation, threshold)


def _case_check(is_case: Callable[[str], bool], s: Settings) -> Check:
    def check(r: str) -> bool:
        if not is_case(r):
            return False
        found = s.detect(r)
        # Undetectable text counts as the right language, as in the reference.
        return True if found is None else found == s.case_language

    return check


def _english_capital(kw: Mapping[str, Any], s: Settings) -> Check:
    return _case_check(str.isupper, s)


def _english_lowercase(kw: Mapping[str, Any], s: Settings) -> Check:
    return _case_check(str.islower, s)


def _no_comma(kw: Mapping[str, Any], s: Settings) -> Check:
    return lambda r: "," not in r


def _quotation(kw: Mapping[str, Any], s: Settings) -> Check:
    def check(r: str) -> bool:
        body = r.strip()
        return len(body) > 1 and body[0] in s.quote_open and body[-1] in s.quote_close

    return check


# --------------------------------------------------------------------------------------------------
# Registry.


@dataclass(frozen=True)
class InstructionSpec:
    """An instruction id, the kwargs it accepts, and its check builder."""

    instruction_id: str
    kwargs: tuple[str, ...]
    build: Callable[[Mapping[str, Any], Settings], Check]

    @property
    def category(self) -> str:
        return self.instruction_id.split(":", 1)[0]


_SPECS = [
    InstructionSpec("keywords:existence", ("keywords",), _keywords_existence),
    InstructionSpec("keywords:frequency", ("keyword", "frequency", "relation"), _keywords_frequency),
    InstructionSpec("keywords:forbidden_words", ("forbidden_words",), _forbidden_words),
    InstructionSpec(
        "keywords:letter_frequency", ("letter", "let_frequency", "let_relation"), _letter_frequency
    ),
    InstructionSpec("language:response_language", ("language",), _response_language),
    InstructionSpec("length_constraints:number_sentences", ("num_sentences", "relation"), _number_sentences),
    InstructionSpec("length_constraints:number_paragraphs", ("num_paragraphs",), _number_paragraphs),
    InstructionSpec("length_constraints:number_words", ("num_words", "relation"), _number_words),
    InstructionSpec(
        "length_constraints:nth_paragraph_first_word",
        ("num_paragraphs", "nth_paragraph", "first_word"),
        _nth_paragraph_first_word,
    ),
    InstructionSpec("detectable_content:number_placeholders", ("num_placeholders",), _number_placeholders),
    InstructionSpec("detectable_content:postscript", ("postscript_marker",), _postscript),
    InstructionSpec("detectable_format:number_bullet_lists", ("num_bullets",), _number_bullet_lists),
    InstructionSpec("detectable_format:constrained_response", (), _constrained_response),
    InstructionSpec(
        "detectable_format:number_highlighted_sections", ("num_highlights",), _number_highlighted_sections
    ),
    InstructionSpec(
        "detectable_format:multiple_sections", ("section_spliter", "num_sections"), _multiple_sections
    ),
    InstructionSpec("detectable_format:json_format", (), _json_format),
    InstructionSpec("detectable_format:title", (), _title),
    InstructionSpec("combination:two_responses", (), _two_responses),
    InstructionSpec("combination:repeat_prompt", ("prompt_to_repeat",), _repeat_prompt),
    InstructionSpec("startend:end_checker", ("end_phrase",), _end_checker),
    InstructionSpec(
        "change_case:capital_word_frequency",
        ("capital_frequency", "capital_relation"),
        _capital_word_frequency,
    ),
    InstructionSpec("change_case:english_capital", (), _english_capital),
    InstructionSpec("change_case:english_lowercase", (), _english_lowercase),
    InstructionSpec("punctuation:no_comma", (), _no_comma),
    InstructionSpec("startend:quotation", (), _quotation),
]

REGISTRY: dict[str, InstructionSpec] = {spec.instruction_id: spec for spec in _SPECS}
INSTRUCTION_IDS: tuple[str, ...] = tuple(REGISTRY)


def build_check(instruction_id: str, kwargs: Mapping[str, Any], settings: Settings) -> Check:
    """The check for one instruction; ValueError for an unknown id or bad kwargs."""
    spec = REGISTRY.get(instruction_id)
    if spec is None:
        raise ValueError(f"unknown instruction id {instruction_id!r}")
    unexpected = sorted(set(kwargs) - set(spec.kwargs))
    if unexpected:
        raise ValueError(f"{instruction_id}: unexpected kwargs {unexpected} (accepted: {list(spec.kwargs)})")
    try:
        return spec.build(kwargs, settings)
    except ValueError as exc:
        raise ValueError(f"{instruction_id}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Strict and loose evaluation.


def loose_variants(response: str) -> list[str]:
    """The reference's eight loose-mode readings of a response.

    The response itself, without its first line, without its last line, and without both, each
    also with every ``*`` removed. An instruction passes in loose mode when any reading passes.
    """
    lines = response.split("\n")
    drop_first = "\n".join(lines[1:]).strip()
    drop_last = "\n".join(lines[:-1]).strip()
    drop_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        drop_first,
        drop_last,
        drop_both,
        drop_first.replace("*", ""),
        drop_last.replace("*", ""),
        drop_both.replace("*", ""),
    ]


def evaluate(response: str, checks: list[Check]) -> tuple[list[bool], list[bool]]:
    """Strict and loose verdicts of ``response`` for each check. Blank readings never pass."""
    variants: list[str] = []
    for v in loose_variants(response)[1:]:
        if v.strip() and v != response and v not in variants:
            variants.append(v)
    strict: list[bool] = []
    loose: list[bool] = []
    for check in checks:
        ok = bool(response.strip()) and check(response)
        strict.append(ok)
        # The response itself is the first loose reading, so strict success implies loose success.
        loose.append(ok or any(check(v) for v in variants))
    return strict, loose
