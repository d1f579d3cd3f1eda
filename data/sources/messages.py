"""`messages` format: one chat per row, as in sablo/oasst2_curated and most Hugging Face chat sets.

Row: `messages` (list of {role, content}; roles system (first only), user, assistant; ends with assistant),
optional `lang`, optional id: `source_id`, else `prompt_id`, else `id`, else a hash of the messages. Rows whose
`lang` differs from cfg.lang are counted as `other_lang` (before validation: they are not used).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from data.config import SourceConfig
from data.errors import InvalidRecord
from data.io import Row
from data.records import ChatRecord, LoadReport, check_messages, require, row_lang, row_source_id

ID_KEYS = ("source_id", "prompt_id", "id")
R = TypeVar("R")


def parse_row(row: dict, *, origin: str, lang: str | None) -> ChatRecord | None:
    """A validated ChatRecord, or None if the row is in another language than `lang`."""
    record_lang = row_lang(row, wanted=lang, origin=origin)
    if record_lang is None:
        return None
    messages = check_messages(require(row, "messages", "a list", origin=origin), origin=origin)
    fallback = [[m["role"], m["content"]] for m in messages]
    source_id = row_source_id(row, origin=origin, keys=ID_KEYS, fallback=fallback)
    return ChatRecord(messages=messages, lang=record_lang, source_id=source_id, origin=origin)


def load_each(
    rows: Iterable[Row],
    parse: Callable[..., R | str | None],
    *,
    lang: str | None,
    report: LoadReport,
    on_invalid: str,
) -> Iterator[R]:
    """Records of formats with one record per row, as they are read: `parse(data, origin=, lang=)` -> the
    record, None (another language: dropped as other_lang), or the reason a valid row is dropped (counted)."""
    for row in rows:
        try:
            if row.error is not None:
                raise row.error
            record = parse(row.data, origin=row.origin, lang=lang)
        except InvalidRecord as error:
            report.reject(error, on_invalid=on_invalid)
            continue
        if record is None:
            report.drop("other_lang", row.origin)
        elif isinstance(record, str):
            report.drop(record, row.origin)
        else:
            yield record


def load(rows: Iterable[Row], *, cfg: SourceConfig, report: LoadReport, on_invalid: str) -> Iterator[ChatRecord]:
    """ChatRecords of all valid rows in cfg.lang (if set), as they are read."""
    return load_each(rows, parse_row, lang=cfg.lang, report=report, on_invalid=on_invalid)
