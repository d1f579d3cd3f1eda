"""`oasst_tree` format: raw OpenAssistant message rows (OpenAssistant/oasst1, oasst2), rebuilt into trees.

Each row is one message: message_id, parent_id (null for the root prompt), role (prompter | assistant), text,
lang, rank, deleted, review_result, message_tree_id, ... One conversation is extracted per tree, the way
sablo/oasst2_curated was made: start at the root prompt and at every turn follow the best-ranked reply (lowest
`rank`; a null rank among siblings counts as worst; ties broken by message_id), stopping where a message has no
reply. A path ending on a prompter turn loses that turn (it has no answer).

Left out and counted in the report, per message unless noted:
- `deleted`: deleted messages; `failed_review`: review_result false (a null review_result is kept: not yet
  reviewed is not failed); `other_lang`: lang differs from cfg.lang (when set);
- `orphan`: the parent is not in the source; `descendant_of_dropped`: below any message left out;
- `tree_without_assistant_reply` (per tree): the root prompt has no usable reply.
Sibling branches that are not on the best path are not records and not counted: picking one path per tree is
the definition of the format.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Iterator

from data.config import SourceConfig
from data.errors import InvalidRecord, preview
from data.io import Row
from data.records import ChatRecord, LoadReport, check_messages, optional, require, row_lang

ROLE_MAP = {"prompter": "user", "assistant": "assistant"}


@dataclasses.dataclass
class _Message:
    message_id: str
    parent_id: str | None
    role: str  # already mapped to user / assistant
    text: str
    rank: float | None
    tree_id: str | None
    lang: str
    origin: str


def _drop_reason(row: dict, *, lang: str | None, origin: str) -> str | None:
    """Why a well-formed message is left out by design, or None."""
    if optional(row, "deleted", "a boolean", origin=origin):
        return "deleted"
    if optional(row, "review_result", "a boolean", origin=origin) is False:
        return "failed_review"
    if row_lang(row, wanted=lang, origin=origin) is None:
        return "other_lang"
    return None


def _parse(row: dict, *, message_id: str, lang: str | None, origin: str) -> _Message:
    if "parent_id" not in row:
        raise InvalidRecord(origin, "missing_field", "missing field 'parent_id' (null for a root prompt)")
    parent_id = optional(row, "parent_id", "a string", origin=origin)
    role = require(row, "role", "a string", origin=origin)
    if role not in ROLE_MAP:
        raise InvalidRecord(
            origin, "unknown_role", f"unknown role {preview(role)} (expected prompter or assistant)"
        )
    text = require(row, "text", "a string", origin=origin)
    if not text.strip():
        raise InvalidRecord(origin, "empty_content", f"{role} message has empty text")
    return _Message(
        message_id=message_id,
        parent_id=parent_id,
        role=ROLE_MAP[role],
        text=text,
        rank=optional(row, "rank", "a number", origin=origin),
        tree_id=optional(row, "message_tree_id", "a string", origin=origin),
        lang=row_lang(row, wanted=lang, origin=origin) or "en",
        origin=origin,
    )


def _best(replies: list[_Message]) -> _Message:
    return min(replies, key=lambda m: (m.rank is None, m.rank or 0, m.message_id))


def load(
    rows: Iterable[Row], *, cfg: SourceConfig, report: LoadReport, on_invalid: str
) -> Iterator[ChatRecord]:
    """One ChatRecord per tree (root prompt) with at least one usable assistant reply, in file order of roots.
    The messages of the whole source are held while the trees are rebuilt (a message's reply may come later)."""
    seen: set[str] = set()  # every readable message_id, kept or not: tells orphans from dropped parents
    kept: dict[str, _Message] = {}
    for row in rows:
        try:
            if row.error is not None:
                raise row.error
            message_id = require(row.data, "message_id", "a string", origin=row.origin)
            if message_id in seen:
                raise InvalidRecord(
                    row.origin, "duplicate_message_id", f"message_id {message_id!r} appears twice"
                )
            seen.add(message_id)
            reason = _drop_reason(row.data, lang=cfg.lang, origin=row.origin)
            if reason is not None:
                report.drop(reason, row.origin)
                continue
            kept[message_id] = _parse(row.data, message_id=message_id, lang=cfg.lang, origin=row.origin)
        except InvalidRecord as error:
            report.reject(error, on_invalid=on_invalid)

    replies: dict[str, list[_Message]] = collections.defaultdict(list)
    roots = []
    for message in kept.values():
        if message.parent_id is None:
            roots.append(message)
        else:
            replies[message.parent_id].append(message)

    reachable: set[str] = set()
    stack = [root.message_id for root in roots]
    while stack:
        current = stack.pop()
        reachable.add(current)
        stack.extend(reply.message_id for reply in replies.get(current, ()))
    for message in kept.values():
        if message.message_id not in reachable:
            reason = "orphan" if message.parent_id not in seen else "descendant_of_dropped"
            report.drop(reason, message.origin)

    for root in roots:
        path = [root]
        while replies.get(path[-1].message_id):
            path.append(_best(replies[path[-1].message_id]))
        while path and path[-1].role != "assistant":
            path.pop()
        if not path:
            report.drop("tree_without_assistant_reply", root.origin)
            continue
        try:
            messages = check_messages([{"role": m.role, "content": m.text} for m in path], origin=root.origin)
        except InvalidRecord as error:
            report.reject(error, on_invalid=on_invalid)
            continue
        source_id = root.tree_id or root.message_id
        yield ChatRecord(messages=messages, lang=root.lang, source_id=source_id, origin=root.origin)
