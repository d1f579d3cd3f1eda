"""Records -> tokenized examples: chat rendering, label masks, truncation, statistics of what was dropped."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from data.errors import DataError
from data.records import ChatRecord, PreferenceRecord
from data.templates import ChatTemplate, TemplateError, render_chat, render_preference

IGNORE_INDEX = -100


@dataclasses.dataclass(frozen=True)
class SFTExample:
    """One training sequence. `labels` are aligned with `input_ids`; -100 marks positions without loss."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    source_id: str
    lang: str
    truncated: bool = False

    @property
    def num_target_tokens(self) -> int:
        # the first position is never a target after the shift inside the loss
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


@dataclasses.dataclass(frozen=True)
class PreferenceExample:
    """A prompt and two completions (each ending with its end-of-turn token unless truncated)."""

    prompt_ids: tuple[int, ...]
    chosen_ids: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    source_id: str
    lang: str
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


@dataclasses.dataclass(frozen=True)
class TokenizeSettings:
    """Everything besides records, tokenizer and template that changes the tokenized output."""

    max_seq_len: int
    prompt_masking: bool = False
    truncation: str = "truncate"  # truncate | drop (SFT only)
    max_prompt_length: int = 512  # preference only
    on_invalid: str = "error"  # a record the chat template cannot render: error (stop) or skip (count)


@dataclasses.dataclass
class TokenizeStats:
    num_records: int = 0
    num_examples: int = 0
    num_truncated: int = 0
    dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict[str, str] = dataclasses.field(
        default_factory=dict
    )  # reason -> "origin: problem" of the first
    # Templates that write no system prompt before an answer (Gemma 2, Mistral): where sisu folds it
    # ("first_user" | "last_user"; None: never) and in how many records.
    system_fold: str | None = None
    num_folded_system: int = 0

    def drop(self, reason: str, example: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, example)

    def merge(self, other: TokenizeStats) -> None:
        self.num_records += other.num_records
        self.num_examples += other.num_examples
        self.num_truncated += other.num_truncated
        self.dropped.update(other.dropped)
        for reason, example in other.examples.items():
            self.examples.setdefault(reason, example)
        self.num_folded_system += other.num_folded_system

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "dropped": dict(self.dropped)}

    @classmethod
    def from_dict(cls, data: dict) -> TokenizeStats:
        return cls(**{**data, "dropped": collections.Counter(data["dropped"])})


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _token_labels(
    tokenizer: Any, text: str, spans: Sequence[tuple[int, int]]
) -> tuple[list[int], list[bool]]:
    """Token ids of `text` and, per token, whether it lies inside one of the character `spans`."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        inside = [
            any(start < span_end and end > span_start for span_start, span_end in spans)
            for start, end in offsets
        ]
        return ids, inside
    # Slow tokenizers have no offsets: encode segment by segment (boundaries fall on turn edges).
    ids: list[int] = []
    inside: list[bool] = []
    cursor = 0
    for span_start, span_end in [*spans, (len(text), len(text))]:
        for segment, flag in ((text[cursor:span_start], False), (text[span_start:span_end], True)):
            if segment:
                seg_ids = _encode(tokenizer, segment)
                ids += seg_ids
                inside += [flag] * len(seg_ids)
        cursor = span_end
    return ids, inside


def tokenize_chat(
    record: ChatRecord, *, tokenizer: Any, template: ChatTemplate, settings: TokenizeSettings
) -> tuple[SFTExample | None, str | None]:
    """(example, None) or (None, reason) when the record is dropped."""
    rendered = render_chat(tokenizer, template, record.messages)
    spans = rendered.assistant_spans if settings.prompt_masking else ((0, len(rendered.text)),)
    ids, inside = _token_labels(tokenizer, rendered.text, spans)
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids, inside)]
    truncated = len(ids) > settings.max_seq_len
    if truncated:
        if settings.truncation == "drop":
            return None, "too_long"
        ids, labels = ids[: settings.max_seq_len], labels[: settings.max_seq_len]
    example = SFTExample(tuple(ids), tuple(labels), record.source_id, record.lang, truncated)
    if example.num_target_tokens == 0:
        return None, "no_target_tokens_after_truncation"
    return example, None


def tokenize_preference(
    record: PreferenceRecord, *, tokenizer: Any, template: ChatTemplate, settings: TokenizeSettings
) -> tuple[PreferenceExample | None, str | None]:
    """Prompt cut from the left to max_prompt_length, then completions cut from the right to max_seq_len."""
    prompt_text, chosen_text = render_preference(tokenizer, template, record.prompt, record.chosen)
    _, rejected_text = render_preference(tokenizer, template, record.prompt, record.rejected)
    prompt = _encode(tokenizer, prompt_text)
    chosen, rejected = _encode(tokenizer, chosen_text), _encode(tokenizer, rejected_text)
    truncated = False
    if len(prompt) + max(len(chosen), len(rejected)) > settings.max_seq_len:
        if len(prompt) > settings.max_prompt_length:
            prompt = prompt[-settings.max_prompt_length :]
            truncated = True
        room = settings.max_seq_len - len(prompt)
        if max(len(chosen), len(rejected)) > room:
            chosen, rejected = chosen[:room], rejected[:room]
            truncated = True
    if chosen == rejected:
        return None, "chosen_equals_rejected_after_truncation"
    return PreferenceExample(
        tuple(prompt), tuple(chosen), tuple(rejected), record.source_id, record.lang, truncated
    ), None


# --- many records -----------------------------------------------------------------------------------------------

_WORKER = threading.local()  # per thread: a rank's work thread, or a worker process's main thread


def init_worker(tokenizer: Any, template: ChatTemplate, settings: TokenizeSettings) -> None:
    """What `tokenize_each` uses in this thread (a worker process's initializer, or called directly)."""
    _WORKER.kwargs = {"tokenizer": tokenizer, "template": template, "settings": settings}


def tokenize_each(
    records: Iterable[ChatRecord | PreferenceRecord], *, kept: list[int] | None = None
) -> tuple[list, TokenizeStats]:
    """The examples of `records` (order kept) and what happened, with the tokenizer, template and settings of
    `init_worker`; `kept` receives the position of each example's record. A record the template cannot render is
    a data problem: DataError (`on_invalid: error`, one line naming the record) or counted under
    `template_error` (`skip`)."""
    stats = TokenizeStats()
    out = []
    for position, record in enumerate(records):
        stats.num_records += 1
        is_chat = isinstance(record, ChatRecord)
        fn = tokenize_chat if is_chat else tokenize_preference
        if (record.messages if is_chat else record.prompt)[0]["role"] == "system":
            stats.num_folded_system += 1  # counted as folded only where the template folds (see finish_stats)
        try:
            example, reason = fn(record, **_WORKER.kwargs)
        except TemplateError as exc:  # a data problem: this record cannot be written in the template
            if _WORKER.kwargs["settings"].on_invalid != "skip":
                raise DataError(f"{record.origin}: {exc}") from None
            stats.drop("template_error", f"{record.origin}: {exc}")
            continue
        if example is None:
            stats.drop(reason, record.origin)
            continue
        stats.num_examples += 1
        stats.num_truncated += int(example.truncated)
        out.append(example)
        if kept is not None:
            kept.append(position)
    return out, stats


def finish_stats(stats: TokenizeStats, *, tokenizer: Any, template: ChatTemplate) -> TokenizeStats:
    """The merged statistics of all records: the all-records-failed check (one line naming the template and the
    first record) and where system prompts were folded (the records with one count only if the template folds)."""
    failed = stats.dropped.get("template_error", 0)
    if stats.num_records and failed == stats.num_records:
        raise DataError(
            f"chat template {template.name!r} cannot render any of the {stats.num_records} records; the first: "
            f"{stats.examples['template_error']}"
        )
    stats.system_fold = template.system_prompt_fold(tokenizer)
    if stats.system_fold is None:
        stats.num_folded_system = 0
    return stats


def _tokenize_chunk(records: Sequence[ChatRecord | PreferenceRecord]) -> tuple[list, TokenizeStats]:
    return tokenize_each(records)


def tokenize_records(
    records: Sequence[ChatRecord | PreferenceRecord],
    *,
    tokenizer: Any,
    template: ChatTemplate,
    settings: TokenizeSettings,
    num_workers: int = 1,
) -> tuple[list[SFTExample | PreferenceExample], TokenizeStats]:
    """Tokenize a list of records in memory (order kept), optionally in `num_workers` processes. The training
    data path tokenizes into the on-disk store instead (data/build.py), with the same functions."""
    chunk = max(1, len(records) // (num_workers * 4) or 1)
    chunks = [records[i : i + chunk] for i in range(0, len(records), chunk)]
    stats = TokenizeStats()
    examples: list = []
    if num_workers <= 1 or len(chunks) <= 1:
        init_worker(tokenizer, template, settings)
        results = map(_tokenize_chunk, chunks)
        for part, part_stats in results:
            examples += part
            stats.merge(part_stats)
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            num_workers,
            mp_context=context,
            initializer=init_worker,
            initargs=(tokenizer, template, settings),
        ) as pool:
            for part, part_stats in pool.map(_tokenize_chunk, chunks):
                examples += part
                stats.merge(part_stats)
    return examples, finish_stats(stats, tokenizer=tokenizer, template=template)
