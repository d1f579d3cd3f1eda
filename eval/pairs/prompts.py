"""The prompts of launch/make_pairs.py: read from chat, preference and IFEval-schema sources, screened and keyed.

A prompt is a conversation ending with a user turn: a chat up to its last user turn, a preference row's prompt,
or an IFEval-schema row's prompt as one user turn (with its verifiable instructions). Screening leaves out, and
counts by reason, every prompt that must not or cannot become a pair before anything is generated:

- `benchmark_prompt`: a user turn equals a prompt of a configured benchmark (case and whitespace ignored), so no
  one trains on the test;
- `duplicate_prompt`: the same conversation again (preference data repeats prompts across pairs);
- `asks_other_language`: its instructions ask for a response language other than target_lang;
- `template_error`: the chat template cannot write it (e.g. a system prompt for a template without a system role
  that sisu cannot fold);
- `prompt_too_long`: longer than max_prompt_tokens as rendered.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

from data.errors import ConfigError, Unreachable
from data.mix import select_fraction
from data.records import ChatRecord, LoadReport, stable_id
from data.sources import load_source
from data.templates import ChatTemplate, TemplateError, render_preference
from eval.benchmarks import read_benchmark_prompts
from eval.ifeval import Prompt, load_prompts
from eval.pairs.config import BenchmarkPromptsConfig, PairsConfig

BENCHMARK_PROMPT = "benchmark_prompt"
DUPLICATE_PROMPT = "duplicate_prompt"
ASKS_OTHER_LANGUAGE = "asks_other_language"
TEMPLATE_ERROR = "template_error"
PROMPT_TOO_LONG = "prompt_too_long"
_ANSWER_PLACEHOLDER = "\u2063answer\u2063"


@dataclasses.dataclass(frozen=True)
class PairPrompt:
    """One prompt to sample answers for."""

    key: str  # "<source index>:<position>:<source_id>", or "i<index>:<key>" for instruction sources
    source_id: str
    messages: tuple[dict, ...]  # ends with a user turn
    origin: str  # "path:line" or "path: record N"
    instructions: Prompt | None = None  # IFEval-schema prompts: the instructions to check

    @property
    def text(self) -> str:
        """The last user turn (what summaries show)."""
        return self.messages[-1]["content"]


def load_pair_prompts(cfg: PairsConfig) -> tuple[list[PairPrompt], list[LoadReport]]:
    """Every prompt of cfg.sources (after fraction subsetting) and cfg.instruction_sources, in config order."""
    if not cfg.sources and not cfg.instruction_sources:
        raise ConfigError(
            "make_pairs: no prompts; set sources (chat or preference data) or instruction_sources (IFEval-schema)"
        )
    prompts: list[PairPrompt] = []
    reports: list[LoadReport] = []
    for index, source in enumerate(cfg.sources):
        records, report = load_source(source, on_invalid=cfg.on_invalid)
        selected = {id(r) for r in select_fraction(records, fraction=source.fraction, seed=cfg.seed)}
        report.num_selected = len(selected)
        reports.append(report)
        for position, record in enumerate(records):
            if id(record) not in selected:
                continue
            messages = record.messages[:-1] if isinstance(record, ChatRecord) else record.prompt
            key = f"{index}:{position}:{record.source_id}"
            prompts.append(PairPrompt(key, record.source_id, tuple(messages), record.origin))
    for index, path in enumerate(cfg.instruction_sources):
        rows = load_prompts(path)
        report = LoadReport(source=path, num_rows=len(rows), num_records=len(rows))
        reports.append(report)
        for position, row in enumerate(rows):
            key = row.key if row.key is not None else position
            source_id = str(row.key) if row.key is not None else stable_id(row.prompt)
            messages = ({"role": "user", "content": row.prompt},)
            prompts.append(PairPrompt(f"i{index}:{key}", source_id, messages, f"{path}: prompt {key}", row))
    return prompts, reports


def normalise(text: str) -> str:
    """Case and whitespace folded: how prompts are compared with benchmark prompts."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def benchmark_prompts(bench: BenchmarkPromptsConfig, *, index: int) -> list[str]:
    """The normalised prompt texts of one benchmark. Out of reach offline is an error (Unreachable): a check that
    silently did nothing would let test prompts through."""
    what = f"benchmarks.{index}"
    try:
        rows = read_benchmark_prompts(bench.path, subset=bench.subset, split=bench.split, what=what)
    except Unreachable as exc:
        raise Unreachable(
            f"{what}: {bench.path} is out of reach offline ({str(exc).removeprefix(what + ': ')}); set {what}.path "
            "to a local copy of its prompts (IFEval-schema .jsonl)"
        ) from None
    return [normalise(row.prompt) for row in rows]


def benchmark_texts(benchmarks: Sequence[BenchmarkPromptsConfig]) -> tuple[set[str], list[str]]:
    """(normalised prompt texts of every benchmark, one summary line per benchmark)."""
    texts: set[str] = set()
    lines = []
    for index, bench in enumerate(benchmarks):
        found = benchmark_prompts(bench, index=index)
        texts.update(found)
        lines.append(benchmark_line(bench, len(found)))
    return texts, lines


def benchmark_line(bench: BenchmarkPromptsConfig, num_prompts: int) -> str:
    subset = f" ({bench.subset})" if bench.subset else ""
    return f"benchmark {bench.path}{subset}: its {num_prompts} prompts are refused"


def render_prompt(tokenizer: Any, template: ChatTemplate, messages: Sequence[dict]) -> list[int]:
    """The prompt's token ids exactly as DPO writes them before an answer (the template's own placement of a
    system prompt included)."""
    before, _answer = render_preference(tokenizer, template, messages, _ANSWER_PLACEHOLDER)
    return tokenizer(before, add_special_tokens=False)["input_ids"]


@dataclasses.dataclass
class Screened:
    """The prompts to sample, their token ids, and what was left out (reason -> keys)."""

    prompts: list[PairPrompt]
    token_ids: list[list[int]]
    skipped: dict[str, list[str]]


def screen_prompts(
    prompts: Iterable[PairPrompt],
    *,
    refused: set[str],
    target_lang: str,
    tokenizer: Any,
    template: ChatTemplate,
    max_prompt_tokens: int,
) -> Screened:
    """Leave out (and count by reason) the prompts that must not or cannot be sampled; render the others."""
    out = Screened([], [], {})
    seen: set[str] = set()

    def skip(reason: str, prompt: PairPrompt) -> None:
        out.skipped.setdefault(reason, []).append(prompt.key)

    for prompt in prompts:
        if any(normalise(m["content"]) in refused for m in prompt.messages if m["role"] == "user"):
            skip(BENCHMARK_PROMPT, prompt)
            continue
        identity = stable_id([[m["role"], m["content"]] for m in prompt.messages])
        if identity in seen:
            skip(DUPLICATE_PROMPT, prompt)
            continue
        seen.add(identity)
        if prompt.instructions is not None and any(
            lang != target_lang for lang in prompt.instructions.response_languages()
        ):
            skip(ASKS_OTHER_LANGUAGE, prompt)
            continue
        try:
            ids = render_prompt(tokenizer, template, prompt.messages)
        except TemplateError:
            skip(TEMPLATE_ERROR, prompt)
            continue
        if len(ids) > max_prompt_tokens:
            skip(PROMPT_TOO_LONG, prompt)
            continue
        out.prompts.append(prompt)
        out.token_ids.append(ids)
    return out
