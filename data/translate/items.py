"""Work items (one record each), the text fields of a record, and the translated output row.

Output rows keep the source schema so they load back as a source, with each original text beside its
translation and the `source_id` unchanged (it pairs the translation with its original):

- chat (`format: messages`): `{"source_id", "lang", "messages": [{"role", "content", "orig_content"}, ...]}`
- preference (`format: preference`): `{"source_id", "lang", "prompt": [{"role", "content", "orig_content"}],
  "chosen", "rejected", "orig_chosen", "orig_rejected"}`

Messages whose role is not translated keep their content (`content == orig_content`). Both kinds also load as
`format: language_contrast` (data/sources/language_contrast.py): translated answer chosen, original rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from data.records import ChatRecord, PreferenceRecord

Record = ChatRecord | PreferenceRecord


@dataclasses.dataclass(frozen=True)
class Item:
    """One record to translate. `key` = "source index:record index:source_id", stable across restarts."""

    key: str
    source: int
    record: Record


@dataclasses.dataclass(frozen=True)
class Field:
    """One text of a record: `messages.2`, `prompt.0`, `chosen` or `rejected`."""

    name: str
    text: str
    translate: bool


def output_format(record: Record) -> str:
    """The source format the output rows of `record` load back with."""
    return "messages" if isinstance(record, ChatRecord) else "preference"


def record_fields(record: Record, *, roles: Collection[str]) -> list[Field]:
    """Every text of `record`, marked for translation by role (chosen and rejected always)."""
    if isinstance(record, ChatRecord):
        return [
            Field(f"messages.{i}", m["content"], m["role"] in roles) for i, m in enumerate(record.messages)
        ]
    fields = [Field(f"prompt.{i}", m["content"], m["role"] in roles) for i, m in enumerate(record.prompt)]
    return fields + [Field("chosen", record.chosen, True), Field("rejected", record.rejected, True)]


def output_row(record: Record, texts: Mapping[str, str], *, lang: str) -> dict:
    """The translated row: `texts` maps field names to translations (missing fields stay as they were)."""

    def turns(key: str, messages: tuple[dict, ...]) -> list[dict]:
        return [
            {
                "role": m["role"],
                "content": texts.get(f"{key}.{i}", m["content"]),
                "orig_content": m["content"],
            }
            for i, m in enumerate(messages)
        ]

    if isinstance(record, ChatRecord):
        return {"source_id": record.source_id, "lang": lang, "messages": turns("messages", record.messages)}
    return {
        "source_id": record.source_id,
        "lang": lang,
        "prompt": turns("prompt", record.prompt),
        "chosen": texts.get("chosen", record.chosen),
        "rejected": texts.get("rejected", record.rejected),
        "orig_chosen": record.chosen,
        "orig_rejected": record.rejected,
    }
