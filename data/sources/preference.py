"""`preference` format: prompt / chosen / rejected rows (TRL's standard and conversational formats).

- `prompt`: a string (one user turn) or a list of messages ending with a user turn.
- `chosen` / `rejected`: a string, or a list of messages ending with the assistant completion. A list may
  repeat the prompt before the completion (full conversations, as in HuggingFaceH4/ultrafeedback_binarized);
  the repeated part must equal the prompt (reason `prompt_mismatch`). Without a `prompt` field the prompt is
  the conversation before the completion (TRL's implicit prompt), which chosen and rejected must share.
- Optional `lang` and id (`source_id`, else `prompt_id`, else `id`, else a hash of the prompt).

chosen == rejected (ignoring surrounding whitespace) is invalid (`chosen_equals_rejected`): the pair teaches
nothing and its DPO loss is constant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from data.config import SourceConfig
from data.errors import InvalidRecord
from data.io import Row
from data.records import (
    LoadReport,
    PreferenceRecord,
    check_message,
    check_messages,
    optional,
    require,
    row_lang,
    row_source_id,
)
from data.sources.messages import load_each

ID_KEYS = ("source_id", "prompt_id", "id")
MESSAGES_OR_STRING = "a string or a list of messages"


def _completion(value: str | list, *, key: str, origin: str) -> tuple[tuple[dict, ...], str]:
    """(the messages before the completion, the completion text)."""
    if isinstance(value, str):
        if not value.strip():
            raise InvalidRecord(origin, "empty_content", f"field {key!r} is empty")
        return (), value
    if not value:
        raise InvalidRecord(origin, "empty_messages", f"field {key!r} is an empty list")
    messages = tuple(check_message(m, origin=origin, where=f"{key}[{i}]") for i, m in enumerate(value))
    if messages[-1]["role"] != "assistant":
        raise InvalidRecord(
            origin,
            "not_ending_with_assistant",
            f"{key} must end with an assistant turn, got {messages[-1]['role']}",
        )
    return messages[:-1], messages[-1]["content"]


def parse_row(row: dict, *, origin: str, lang: str | None) -> PreferenceRecord | None:
    """A validated PreferenceRecord, or None if the row is in another language than `lang`."""
    record_lang = row_lang(row, wanted=lang, origin=origin)
    if record_lang is None:
        return None
    chosen_prefix, chosen = _completion(
        require(row, "chosen", MESSAGES_OR_STRING, origin=origin), key="chosen", origin=origin
    )
    rejected_prefix, rejected = _completion(
        require(row, "rejected", MESSAGES_OR_STRING, origin=origin), key="rejected", origin=origin
    )
    raw_prompt: Any = optional(row, "prompt", MESSAGES_OR_STRING, origin=origin)
    if raw_prompt is None:
        if not chosen_prefix:
            raise InvalidRecord(origin, "missing_field", "missing field 'prompt'")
        if chosen_prefix != rejected_prefix:
            raise InvalidRecord(
                origin,
                "prompt_mismatch",
                "without a 'prompt' field, chosen and rejected must share the turns before the completion",
            )
        raw_prompt = list(chosen_prefix)
    elif isinstance(raw_prompt, str):
        raw_prompt = [{"role": "user", "content": raw_prompt}]
    prompt = check_messages(raw_prompt, origin=origin, what="prompt", last_role="user")
    for key, prefix in (("chosen", chosen_prefix), ("rejected", rejected_prefix)):
        if prefix and prefix != prompt:
            raise InvalidRecord(
                origin, "prompt_mismatch", f"{key}: the turns before the completion differ from the prompt"
            )
    if chosen.strip() == rejected.strip():
        raise InvalidRecord(origin, "chosen_equals_rejected", "chosen and rejected are identical")
    fallback = [[m["role"], m["content"]] for m in prompt]
    return PreferenceRecord(
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        lang=record_lang,
        source_id=row_source_id(row, origin=origin, keys=ID_KEYS, fallback=fallback),
        origin=origin,
    )


def load(
    rows: Iterable[Row], *, cfg: SourceConfig, report: LoadReport, on_invalid: str
) -> Iterator[PreferenceRecord]:
    """PreferenceRecords of all valid rows in cfg.lang (if set), as they are read; each row is one pair."""
    return load_each(rows, parse_row, lang=cfg.lang, report=report, on_invalid=on_invalid)
