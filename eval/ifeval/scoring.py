"""Scoring responses against IFEval prompts: verdicts, accuracies, and the output files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.errors import ConfigError, DataError
from data.files import atomic_write_text

from .checkers import (
    ENGLISH_CONSTRAINED_OPTIONS,
    FINNISH_CONSTRAINED_OPTIONS,
    Settings,
    build_check,
    evaluate,
)
from .loading import Key, Prompt
from .text import make_text_tools

COMPAT_MODES = ("lumiopen",)
SENTENCE_SPLITTERS = ("builtin", "punkt")


class MissingResponsesError(DataError):
    """Some prompts have no response; ``keys`` lists them (prompt text where a prompt has no key)."""

    def __init__(self, keys: list[Key]) -> None:
        self.keys = keys
        shown = ", ".join(str(k) if len(str(k)) <= 40 else repr(str(k)[:37] + "...") for k in keys)
        super().__init__(
            f"{len(keys)} prompt(s) have no response: {shown}; "
            "pass allow_missing=True (--allow-missing) to score only the matched prompts"
        )


@dataclass(frozen=True)
class Verdict:
    """Strict and loose verdicts for one prompt's instructions."""

    key: Key | None
    prompt: str
    instruction_id_list: list[str]
    follow_instruction_list_strict: list[bool]
    follow_instruction_list_loose: list[bool]

    def as_row(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "prompt": self.prompt,
            "instruction_id_list": self.instruction_id_list,
            "follow_instruction_list_strict": self.follow_instruction_list_strict,
            "follow_instruction_list_loose": self.follow_instruction_list_loose,
        }


@dataclass(frozen=True)
class Accuracy:
    """Instruction-level accuracy over a group of instructions."""

    strict_acc: float
    loose_acc: float
    count: int


@dataclass(frozen=True)
class Scores:
    """The result of :func:`score`: per-prompt verdicts and aggregate accuracies (fractions)."""

    verdicts: list[Verdict]
    prompt_level_strict_acc: float
    inst_level_strict_acc: float
    prompt_level_loose_acc: float
    inst_level_loose_acc: float
    per_category: dict[str, Accuracy]
    per_instruction: dict[str, Accuracy]
    counts: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)
    missing_keys: list[Key] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The content of scores.json."""

        def group(table: dict[str, Accuracy]) -> dict[str, dict[str, float | int]]:
            return {
                name: {"strict_acc": a.strict_acc, "loose_acc": a.loose_acc, "count": a.count}
                for name, a in sorted(table.items())
            }

        return {
            "prompt_level_strict_acc": self.prompt_level_strict_acc,
            "inst_level_strict_acc": self.inst_level_strict_acc,
            "prompt_level_loose_acc": self.prompt_level_loose_acc,
            "inst_level_loose_acc": self.inst_level_loose_acc,
            "per_category": group(self.per_category),
            "per_instruction": group(self.per_instruction),
            "counts": dict(self.counts),
            "missing_keys": list(self.missing_keys),
            "settings": dict(self.settings),
        }


def make_settings(*, language: str, compat: str | None, sentence_splitter: str) -> Settings:
    """Checker settings for a benchmark language; ConfigError for unknown options."""
    if not isinstance(language, str) or not language.strip() or language != language.strip().lower():
        raise ConfigError(
            f"language must be a lower-case ISO 639-1 code such as 'en' or 'fi', got {language!r}"
        )
    if compat is not None and compat not in COMPAT_MODES:
        raise ConfigError(f"unknown compat mode {compat!r}; expected None or one of {COMPAT_MODES}")
    if sentence_splitter not in SENTENCE_SPLITTERS:
        raise ConfigError(
            f"unknown sentence_splitter {sentence_splitter!r}; expected one of {SENTENCE_SPLITTERS}"
        )
    if language == "en":
        # The reference's behaviour: English sentence model, English answers, ASCII quotes.
        return Settings(text=make_text_tools(sentence_splitter, "en"))
    if compat == "lumiopen":
        # LumiOpen's harness (ifeval_fi, December 2024): the reference's checks, except that its Finnish task
        # accepts only the Finnish answers of constrained_response ("Vastaukseni on kyllä./ei./ehkä.").
        options = FINNISH_CONSTRAINED_OPTIONS if language == "fi" else ENGLISH_CONSTRAINED_OPTIONS
        return Settings(text=make_text_tools(sentence_splitter, "en"), constrained_options=options)
    options = ENGLISH_CONSTRAINED_OPTIONS
    if language == "fi":
        options = FINNISH_CONSTRAINED_OPTIONS + ENGLISH_CONSTRAINED_OPTIONS
    return Settings(
        text=make_text_tools(sentence_splitter, language),
        case_language=language,
        fold_case_for_detection=True,
        constrained_options=options,
        # Finnish and other European styles: ”lainaus”, »lainaus», “quote”.
        quote_open='"\u201d\u201c\u00bb',
        quote_close='"\u201d\u00bb',
    )


def _lookup(responses: Mapping[Any, str], by_text: Mapping[str, str], prompt: Prompt) -> str | None:
    if prompt.key is not None:
        if prompt.key in responses:
            return responses[prompt.key]
        if str(prompt.key) in by_text:
            return by_text[str(prompt.key)]
    return by_text.get(prompt.prompt)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def check_responses(
    prompt: Prompt,
    responses: Iterable[str],
    *,
    language: str = "en",
    compat: str | None = None,
    sentence_splitter: str = "builtin",
) -> list[tuple[list[bool], list[bool]]]:
    """(strict, loose) verdicts of each of several responses to one prompt, with the checkers of ``language`` (as
    :func:`score` applies them): for ranking sampled answers by the instructions they follow."""
    settings = make_settings(language=language, compat=compat, sentence_splitter=sentence_splitter)
    checks = [build_check(i, kw, settings) for i, kw in zip(prompt.instruction_id_list, prompt.kwargs)]
    return [evaluate(response, checks) for response in responses]


def score(
    prompts: Iterable[Prompt],
    responses: Mapping[Any, str],
    *,
    language: str = "en",
    exclude_other_languages: bool = False,
    allow_missing: bool = False,
    compat: str | None = None,
    sentence_splitter: str = "builtin",
) -> Scores:
    """Score ``responses`` against ``prompts`` in strict and loose mode.

    ``responses`` maps a prompt's key (int or str) or its exact prompt text to the response.
    ``language`` is the benchmark language; for languages other than English the case checks are
    language-aware unless ``compat="lumiopen"`` (the harness the paper used). With
    ``exclude_other_languages`` prompts demanding a response language other than ``language`` are
    dropped (510 of 541 remain for English). Missing responses raise MissingResponsesError unless
    ``allow_missing``. ``sentence_splitter`` is "builtin" or "punkt" (needs nltk and its data).
    """
    settings = make_settings(language=language, compat=compat, sentence_splitter=sentence_splitter)
    prompts = list(prompts)
    by_text = {str(k): v for k, v in responses.items()}

    excluded = 0
    selected: list[Prompt] = []
    for prompt in prompts:
        if exclude_other_languages and any(lang != language for lang in prompt.response_languages()):
            excluded += 1
        else:
            selected.append(prompt)

    matched: list[tuple[Prompt, str]] = []
    missing: list[Key] = []
    for prompt in selected:
        response = _lookup(responses, by_text, prompt)
        if response is None:
            missing.append(prompt.key if prompt.key is not None else prompt.prompt)
        elif not isinstance(response, str):
            raise DataError(
                f"response for prompt {prompt.key!r} must be a string, got {type(response).__name__}"
            )
        else:
            matched.append((prompt, response))
    if missing and not allow_missing:
        raise MissingResponsesError(missing)
    if not matched:
        raise DataError("no prompt has a response to score")

    verdicts: list[Verdict] = []
    tallies: dict[str, list[int]] = {}
    for prompt, response in matched:
        checks = [build_check(i, kw, settings) for i, kw in zip(prompt.instruction_id_list, prompt.kwargs)]
        strict, loose = evaluate(response, checks)
        verdicts.append(Verdict(prompt.key, prompt.prompt, list(prompt.instruction_id_list), strict, loose))
        for iid, s_ok, l_ok in zip(prompt.instruction_id_list, strict, loose):
            tally = tallies.setdefault(iid, [0, 0, 0])
            tally[0] += s_ok
            tally[1] += l_ok
            tally[2] += 1

    def accuracy(ids: Iterable[str]) -> Accuracy:
        s_ok = l_ok = n = 0
        for iid in ids:
            s_ok, l_ok, n = s_ok + tallies[iid][0], l_ok + tallies[iid][1], n + tallies[iid][2]
        return Accuracy(_ratio(s_ok, n), _ratio(l_ok, n), n)

    categories: dict[str, list[str]] = {}
    for iid in tallies:
        categories.setdefault(iid.split(":", 1)[0], []).append(iid)

    overall = accuracy(tallies)
    return Scores(
        verdicts=verdicts,
        prompt_level_strict_acc=_ratio(
            sum(all(v.follow_instruction_list_strict) for v in verdicts), len(verdicts)
        ),
        inst_level_strict_acc=overall.strict_acc,
        prompt_level_loose_acc=_ratio(
            sum(all(v.follow_instruction_list_loose) for v in verdicts), len(verdicts)
        ),
        inst_level_loose_acc=overall.loose_acc,
        per_category={name: accuracy(ids) for name, ids in categories.items()},
        per_instruction={iid: accuracy([iid]) for iid in tallies},
        counts={
            "prompts_total": len(prompts),
            "prompts_excluded_other_language": excluded,
            "prompts_missing_response": len(missing),
            "prompts_scored": len(verdicts),
            "instructions_scored": overall.count,
        },
        settings={
            "language": language,
            "compat": compat,
            "sentence_splitter": sentence_splitter,
            "exclude_other_languages": exclude_other_languages,
            "allow_missing": allow_missing,
        },
        missing_keys=missing,
    )


def write_outputs(scores: Scores, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``out_dir/verdicts.jsonl`` and ``out_dir/scores.json``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verdicts_path, scores_path = out / "verdicts.jsonl", out / "scores.json"
    rows = "".join(json.dumps(v.as_row(), ensure_ascii=False) + "\n" for v in scores.verdicts)
    atomic_write_text(verdicts_path, rows)
    atomic_write_text(scores_path, json.dumps(scores.as_dict(), indent=2, ensure_ascii=False) + "\n")
    return verdicts_path, scores_path


def format_table(scores: Scores) -> str:
    """A short human-readable summary: overall accuracies and per-category instruction accuracy."""
    c = scores.counts
    lines = [
        f"IFEval ({scores.settings.get('language', '?')}): {c['prompts_scored']} prompts, "
        f"{c['instructions_scored']} instructions"
        + (
            f", {c['prompts_excluded_other_language']} excluded"
            if c["prompts_excluded_other_language"]
            else ""
        )
        + (f", {c['prompts_missing_response']} missing" if c["prompts_missing_response"] else ""),
        f"{'':<22}{'strict':>8}{'loose':>8}",
        f"{'prompt-level':<22}{scores.prompt_level_strict_acc:>8.4f}{scores.prompt_level_loose_acc:>8.4f}",
        f"{'instruction-level':<22}{scores.inst_level_strict_acc:>8.4f}{scores.inst_level_loose_acc:>8.4f}",
    ]
    for name, acc in sorted(scores.per_category.items()):
        lines.append(f"  {name:<20}{acc.strict_acc:>8.4f}{acc.loose_acc:>8.4f}  (n={acc.count})")
    return "\n".join(lines)
