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
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import DataError
from data.records import ChatRecord, PreferenceRecord
from data.templates import ChatTemplate, TemplateError, render_chat, render_preference

logger = logging.getLogger("sisu")
IGNORE_INDEX = -100
CACHE_VERSION = 2


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


# --- parallel workers -----------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer: Any, template: ChatTemplate, settings: TokenizeSettings) -> None:
    _WORKER.update(tokenizer=tokenizer, template=template, settings=settings)


def _tokenize_chunk(records: Sequence[ChatRecord | PreferenceRecord]) -> tuple[list, TokenizeStats]:
    stats = TokenizeStats(num_records=len(records))
    out = []
    for record in records:
        fn = tokenize_chat if isinstance(record, ChatRecord) else tokenize_preference
        try:
            example, reason = fn(record, **_WORKER)
        except TemplateError as exc:  # a data problem: this record cannot be written in the template
            if _WORKER["settings"].on_invalid != "skip":
                raise DataError(f"{record.origin}: {exc}") from None
            stats.drop("template_error", f"{record.origin}: {exc}")
            continue
        if example is None:
            stats.drop(reason, record.origin)
            continue
        stats.num_examples += 1
        stats.num_truncated += int(example.truncated)
        out.append(example)
    return out, stats


def tokenization_key(
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
    key: str | None = None,
) -> tuple[list[SFTExample | PreferenceExample], TokenizeStats]:
    """Tokenize all records (order kept), using the on-disk cache when its key matches.

    A record the template cannot render stops the job (`on_invalid: error`) or is counted under
    `template_error` (`skip`); when the template renders none of the records, the job stops either way, in one
    line naming the template and the first record.
    """
    cache_path = None
    if cache_dir is not None:
        key = key or tokenization_key(records, tokenizer, template, settings)
        cache_path = Path(cache_dir) / f"tokenized-{key}.npz"
        cached = load_cache(cache_path) if cache_path.is_file() else None
        if cached is not None:
            logger.info("tokenized data: %d examples from cache %s", len(cached[0]), cache_path)
            return cached
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
    failed = stats.dropped.get("template_error", 0)
    if records and failed == len(records):
        raise DataError(
            f"chat template {template.name!r} cannot render any of the {len(records)} records; the first: "
            f"{stats.examples['template_error']}"
        )
    stats.system_fold = template.system_prompt_fold(tokenizer)
    if stats.system_fold is not None:
        stats.num_folded_system = sum(
            1
            for r in records
            if (r.messages if isinstance(r, ChatRecord) else r.prompt)[0]["role"] == "system"
        )
    if cache_path is not None:
        save_cache(cache_path, examples, stats)
    return examples, stats


# --- the cache: arrays and JSON only (nothing read back can run code) ------------------------------------------

_SFT_FIELDS = ("input_ids", "labels")
_PAIR_FIELDS = ("prompt_ids", "chosen_ids", "rejected_ids")


def save_cache(path: Path, examples: Sequence[SFTExample | PreferenceExample], stats: TokenizeStats) -> None:
    """Write the examples as flat int32 arrays with offsets plus one JSON string (numpy .npz, no pickle),
    atomically."""
    kind = "preference" if examples and isinstance(examples[0], PreferenceExample) else "sft"
    fields = _PAIR_FIELDS if kind == "preference" else _SFT_FIELDS
    arrays = {}
    for name in fields:
        rows = [getattr(e, name) for e in examples]
        arrays[name] = np.fromiter((t for row in rows for t in row), dtype=np.int32)
        arrays[f"{name}_offsets"] = np.cumsum([0, *map(len, rows)], dtype=np.int64)
    arrays["truncated"] = np.array([e.truncated for e in examples], dtype=bool)
    meta = {
        "version": CACHE_VERSION,
        "kind": kind,
        "source_ids": [e.source_id for e in examples],
        "langs": [e.lang for e in examples],
        "stats": stats.as_dict(),
    }
    arrays["meta"] = np.array(json.dumps(meta, ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokenized-", suffix=".npz", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def load_cache(path: Path) -> tuple[list, TokenizeStats] | None:
    """The cached examples, or None (with a warning) when the file is not a cache this version wrote. Loaded with
    `allow_pickle=False`: a planted pickle is refused, never executed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"cache version {meta.get('version')}, this sisu writes {CACHE_VERSION}")
            arrays = {name: data[name] for name in data.files if name != "meta"}
    except (ValueError, KeyError, OSError, EOFError) as exc:
        logger.warning("ignoring %s: not a tokenization cache of this sisu (%s); tokenizing again", path, exc)
        return None
    kind = meta["kind"]
    fields = _PAIR_FIELDS if kind == "preference" else _SFT_FIELDS
    columns = []
    for name in fields:
        flat, offsets = arrays[name].tolist(), arrays[f"{name}_offsets"].tolist()
        columns.append([tuple(flat[a:b]) for a, b in zip(offsets, offsets[1:])])
    cls = PreferenceExample if kind == "preference" else SFTExample
    examples = [
        cls(*values, source_id, lang, bool(truncated))
        for *values, source_id, lang, truncated in zip(
            *columns, meta["source_ids"], meta["langs"], arrays["truncated"].tolist()
        )
    ]
    return examples, TokenizeStats.from_dict(meta["stats"])
