"""The data path the trainer and `launch/inspect_data.py` share: config -> records -> tokenized examples."""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import statistics
from typing import Any, Literal

from data.config import DataConfig
from data.errors import DataError
from data.mix import build_mix
from data.records import ChatRecord, LoadReport
from data.sources import CHAT_FORMATS, PREFERENCE_FORMATS
from data.templates import ChatTemplate, render_chat
from data.tokenize import (
    IGNORE_INDEX,
    PreferenceExample,
    TokenizeSettings,
    TokenizeStats,
    tokenization_key,
    tokenize_records,
)

logger = logging.getLogger("sisu")

Kind = Literal["sft", "preference"]


@dataclasses.dataclass
class DataBundle:
    """Everything the trainer needs from the data layer, plus what happened on the way."""

    kind: Kind
    examples: list
    reports: list[LoadReport]
    stats: TokenizeStats
    template: ChatTemplate
    records: list
    max_len: int | None = None
    key: str = ""  # hash of the records, tokenizer, template and settings (the tokenization cache key)

    def lengths(self) -> list[int]:
        if self.kind == "sft":
            return [len(e.input_ids) for e in self.examples]
        return [e.length for e in self.examples]

    def num_target_tokens(self) -> int:
        if self.kind == "sft":
            return sum(e.num_target_tokens for e in self.examples)
        return sum(len(e.chosen_ids) + len(e.rejected_ids) for e in self.examples)

    def summary_lines(self) -> list[str]:
        lines = [f"source {report.summary()}" for report in self.reports]
        by_lang = collections.Counter(e.lang for e in self.examples)
        langs = ", ".join(f"{lang}: {n}" for lang, n in sorted(by_lang.items()))
        lines.append(
            f"{self.kind} examples: {len(self.examples)} ({langs}) from {self.stats.num_records} records; "
            f"truncated {self.stats.num_truncated}; dropped "
            + (
                ", ".join(
                    f"{r}: {n} (e.g. {self.stats.examples.get(r, '?')})"
                    for r, n in sorted(self.stats.dropped.items())
                )
                or "0"
            )
        )
        if self.stats.num_folded_system:
            where = "first" if self.stats.system_fold == "first_user" else "last"
            lines.append(
                f"chat template {self.template.name!r} would not write a system prompt before an answer: the system "
                f"prompt of {self.stats.num_folded_system} records was folded into their {where} user turn"
            )
        lengths = self.lengths()
        if lengths:
            ordered = sorted(lengths)
            p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
            lines.append(
                f"tokens per example: min {ordered[0]}, median {statistics.median(ordered):.0f}, p90 {p90}, "
                f"max {ordered[-1]}, mean {statistics.fmean(ordered):.1f}; target tokens {self.num_target_tokens()}"
            )
        return lines


def data_kind(cfg: DataConfig) -> Kind:
    if not cfg.sources:
        raise DataError("data.sources is empty: add at least one {path, format} source")
    formats = {s.format for s in cfg.sources}
    if formats <= set(CHAT_FORMATS):
        return "sft"
    if formats <= set(PREFERENCE_FORMATS):
        return "preference"
    raise DataError(
        f"data.sources mixes chat formats ({', '.join(CHAT_FORMATS)}) and preference formats "
        f"({', '.join(PREFERENCE_FORMATS)}): got {', '.join(sorted(formats))}"
    )


def default_cache_dir() -> str:
    """$SISU_CACHE/tokenized, else .cache/sisu/tokenized under the working directory (see data.cache_dir)."""
    base = os.environ.get("SISU_CACHE") or os.path.join(".cache", "sisu")
    return os.path.join(base, "tokenized")


def build_dataset(
    cfg: DataConfig,
    *,
    tokenizer: Any,
    max_seq_len: int,
    expect: Kind | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> DataBundle:
    """Load, mix and tokenize `cfg.sources`. `expect` guards against preference data in SFT and vice versa."""
    kind = data_kind(cfg)
    if expect is not None and kind != expect:
        wanted = (
            f"chat sources ({', '.join(CHAT_FORMATS)})"
            if expect == "sft"
            else f"preference sources ({', '.join(PREFERENCE_FORMATS)})"
        )
        raise DataError(f"this job needs {wanted}, but data.sources holds {kind} data")
    records, reports = build_mix(cfg)
    if not records:
        raise DataError("no usable records in data.sources (see the skip counts above)")
    template = ChatTemplate.resolve(tokenizer, cfg.template)
    settings = TokenizeSettings(
        max_seq_len=max_seq_len,
        prompt_masking=cfg.prompt_masking,
        truncation=cfg.truncation,
        max_prompt_length=cfg.max_prompt_length,
        on_invalid=cfg.on_invalid,
    )
    key = tokenization_key(records, tokenizer, template, settings)
    examples, stats = tokenize_records(
        records,
        tokenizer=tokenizer,
        template=template,
        settings=settings,
        num_workers=cfg.num_workers,
        cache_dir=(cfg.cache_dir or cache_dir or default_cache_dir()) if use_cache else None,
        key=key,
    )
    if not examples:
        raise DataError("every record was dropped during tokenization (see the drop counts)")
    return DataBundle(kind, examples, reports, stats, template, records, max_len=max_seq_len, key=key)


def mark_trained_text(
    bundle: DataBundle, tokenizer: Any, index: int = 0, *, open_mark: str = "⟦", close_mark: str = "⟧"
) -> str:
    """Decode example `index` with the tokens that carry loss wrapped in marks (for inspection)."""
    example = bundle.examples[index]
    if isinstance(example, PreferenceExample):
        prompt = tokenizer.decode(list(example.prompt_ids))
        chosen = tokenizer.decode(list(example.chosen_ids))
        rejected = tokenizer.decode(list(example.rejected_ids))
        return f"{prompt}{open_mark}{chosen}{close_mark}\n--- rejected ---\n{prompt}{open_mark}{rejected}{close_mark}"
    pieces: list[str] = []
    run: list[int] = []
    trained = None
    for token, label in zip(example.input_ids, example.labels):
        flag = label != IGNORE_INDEX
        if trained is not None and flag != trained:
            text = tokenizer.decode(run)
            pieces.append(f"{open_mark}{text}{close_mark}" if trained else text)
            run = []
        trained = flag
        run.append(token)
    if run:
        text = tokenizer.decode(run)
        pieces.append(f"{open_mark}{text}{close_mark}" if trained else text)
    return "".join(pieces)


def examples_by_source(bundle: DataBundle) -> dict[tuple[str, str], list[int]]:
    """Indices of the examples of each (source, language), sources as data.sources names them, in data order."""
    labels = sorted((report.source for report in bundle.reports), key=len, reverse=True)
    groups: dict[tuple[str, str], list[int]] = {}
    # Tokenization keeps the records' order and only drops some: an example's record is the next one with its id
    # and language (ids alone may repeat across sources).
    records = iter(bundle.records)
    for index, example in enumerate(bundle.examples):
        record = next(r for r in records if (r.source_id, r.lang) == (example.source_id, example.lang))
        label = next((lab for lab in labels if record.origin.startswith(lab)), record.origin)
        groups.setdefault((label, example.lang), []).append(index)
    return groups


def rendered_spans(tokenizer: Any, template: ChatTemplate, record: ChatRecord) -> list[str]:
    """The assistant spans of a record as text (used by tests and inspection)."""
    rendered = render_chat(tokenizer, template, record.messages)
    return [rendered.text[a:b] for a, b in rendered.assistant_spans]
