"""Records -> tokenized examples: chat rendering, label masks, truncation, an on-disk cache, parallel workers."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.records import ChatRecord, PreferenceRecord
from data.templates import ChatTemplate, render_chat, render_preference

logger = logging.getLogger("sisu")
IGNORE_INDEX = -100
CACHE_VERSION = 1


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


@dataclasses.dataclass
class TokenizeStats:
    num_records: int = 0
    num_examples: int = 0
    num_truncated: int = 0
    dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def merge(self, other: TokenizeStats) -> None:
        self.num_records += other.num_records
        self.num_examples += other.num_examples
        self.num_truncated += other.num_truncated
        self.dropped.update(other.dropped)


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


# --- parallel workers -----------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer: Any, template: ChatTemplate, settings: TokenizeSettings) -> None:
    _WORKER.update(tokenizer=tokenizer, template=template, settings=settings)


def _tokenize_chunk(records: Sequence[ChatRecord | PreferenceRecord]) -> tuple[list, TokenizeStats]:
    stats = TokenizeStats(num_records=len(records))
    out = []
    for record in records:
        fn = tokenize_chat if isinstance(record, ChatRecord) else tokenize_preference
        example, reason = fn(record, **_WORKER)
        if example is None:
            stats.dropped[reason] += 1
            continue
        stats.num_examples += 1
        stats.num_truncated += int(example.truncated)
        out.append(example)
    return out, stats


def _fingerprint(
    records: Sequence, tokenizer: Any, template: ChatTemplate, settings: TokenizeSettings
) -> str:
    digest = hashlib.sha256()
    digest.update(f"v{CACHE_VERSION}".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    digest.update(hashlib.sha256(vocab.encode()).digest())
    digest.update(json.dumps([template.source, template.end_of_turn, dataclasses.asdict(settings)]).encode())
    for record in records:
        digest.update(json.dumps(dataclasses.asdict(record), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:24]


def tokenize_records(
    records: Sequence[ChatRecord | PreferenceRecord],
    *,
    tokenizer: Any,
    template: ChatTemplate,
    settings: TokenizeSettings,
    num_workers: int = 1,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[list[SFTExample | PreferenceExample], TokenizeStats]:
    """Tokenize all records (order kept), using the on-disk cache when its key matches."""
    cache_path = None
    if cache_dir is not None:
        key = _fingerprint(records, tokenizer, template, settings)
        cache_path = Path(cache_dir) / f"tokenized-{key}.pkl"
        if cache_path.is_file():
            with cache_path.open("rb") as handle:
                examples, stats = pickle.load(handle)
            logger.info("tokenized data: %d examples from cache %s", len(examples), cache_path)
            return examples, stats
    chunk = max(1, len(records) // (num_workers * 4) or 1)
    chunks = [records[i : i + chunk] for i in range(0, len(records), chunk)]
    stats = TokenizeStats()
    examples: list = []
    if num_workers <= 1 or len(chunks) <= 1:
        _init_worker(tokenizer, template, settings)
        results = map(_tokenize_chunk, chunks)
        for part, part_stats in results:
            examples += part
            stats.merge(part_stats)
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            num_workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(tokenizer, template, settings),
        ) as pool:
            for part, part_stats in pool.map(_tokenize_chunk, chunks):
                examples += part
                stats.merge(part_stats)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tokenized-", dir=cache_path.parent)
        with os.fdopen(fd, "wb") as handle:
            pickle.dump((examples, stats), handle)
        os.replace(tmp, cache_path)
    return examples, stats
