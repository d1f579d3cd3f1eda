"""Validated records (what every source produces) and the report of what loading a source did.

A chat is a tuple of {"role", "content"} messages: an optional system message first, then user and assistant
turns alternating, starting with user and ending with assistant. `check_messages` enforces exactly that and is
the single definition of a valid conversation for every source format.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

from data.errors import InvalidRecord, preview

ROLES = ("system", "user", "assistant")
_ARTICLE = {"user": "a", "assistant": "an"}


@dataclasses.dataclass(frozen=True)
class ChatRecord:
    """One SFT conversation."""

    # each {"role": "system"|"user"|"assistant", "content": str}; ends with assistant
    messages: tuple[dict, ...]
    lang: str
    source_id: str  # stable across languages: an English row and its Finnish translation share it
    origin: str  # "path:line" (or "path: record N") for error messages and inspection


@dataclasses.dataclass(frozen=True)
class PreferenceRecord:
    """One preference pair: a prompt conversation and two assistant completions."""

    prompt: tuple[dict, ...]  # messages, the last one role "user"
    chosen: str
    rejected: str
    lang: str
    source_id: str
    origin: str


@dataclasses.dataclass
class LoadReport:
    """What happened while loading one source.

    `skipped` counts, by reason, everything that did not become a record: invalid rows skipped with
    on_invalid=skip and rows dropped by design (deleted OASST messages, HelpSteer2 ties, ...). The unit is the
    row, except where a reason says otherwise (see each format's docstring).
    """

    source: str  # path or hub id
    num_rows: int = 0  # rows read
    num_records: int = 0  # records produced (before fraction subsetting)
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict[str, str] = dataclasses.field(default_factory=dict)  # reason -> first origin seen
    num_selected: int | None = None  # records kept after fraction subsetting (set by data.mix.build_mix)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "skipped": dict(self.skipped)}

    @classmethod
    def from_dict(cls, data: dict) -> LoadReport:
        return cls(**{**data, "skipped": collections.Counter(data["skipped"])})

    def merge(self, other: LoadReport) -> None:
        """Add the counts of a later part of the same source (the first example of a reason stays the earliest)."""
        self.num_rows += other.num_rows
        self.skipped.update(other.skipped)
        for reason, origin in other.examples.items():
            self.examples.setdefault(reason, origin)

    def drop(self, reason: str, origin: str, count: int = 1) -> None:
        """Count `count` rows or records that were left out for `reason`."""
        if count <= 0:
            return
        self.skipped[reason] += count
        self.examples.setdefault(reason, origin)

    def reject(self, error: InvalidRecord, *, on_invalid: str) -> None:
        """Apply the on_invalid policy to an invalid row: raise it (error) or count it (skip)."""
        if on_invalid != "skip":
            raise error
        self.drop(error.reason, error.origin)

    def describe_skips(self) -> str:
        """'reason=count (e.g. origin), ...' in reason order; empty when nothing was left out."""
        return ", ".join(
            f"{reason}={n} (e.g. {self.examples.get(reason, '?')})"
            for reason, n in sorted(self.skipped.items())
        )

    def summary(self) -> str:
        """One line for logs: rows, records, selection and what was left out, with an example location each."""
        text = f"{self.source}: {self.num_rows} rows -> {self.num_records} records"
        if self.num_selected is not None and self.num_selected != self.num_records:
            text += f" ({self.num_selected} selected)"
        if self.skipped:
            text += f"; left out: {self.describe_skips()}"
        return text


def stable_id(value: Any) -> str:
    """A short id derived from content, identical across runs and machines (unlike hash())."""
    blob = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# --- field access with one-line errors ---------------------------------------------------------------------

_KINDS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda v: isinstance(v, str),
    "a number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "a list": lambda v: isinstance(v, (list, tuple)),
    "a boolean": lambda v: isinstance(v, bool),
    "a string or an integer": lambda v: (
        isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
    ),
    "a string or a list of messages": lambda v: isinstance(v, (str, list, tuple)),
}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def require(row: dict, key: str, kind: str, *, origin: str) -> Any:
    """row[key], which must be present, not null and of `kind` (a key of _KINDS, e.g. "a string")."""
    if row.get(key) is None:
        problem = f"missing field {key!r}" if key not in row else f"field {key!r} is null"
        raise InvalidRecord(origin, "missing_field", problem)
    return optional(row, key, kind, origin=origin)


def optional(row: dict, key: str, kind: str, *, origin: str) -> Any:
    """row[key] if present and not null (checked against `kind`), else None."""
    value = row.get(key)
    if value is not None and not _KINDS[kind](value):
        raise InvalidRecord(
            origin, "wrong_type", f"field {key!r} must be {kind}, got {_type_name(value)} {preview(value)}"
        )
    return value


def row_lang(row: dict, *, wanted: str | None, origin: str, key: str = "lang") -> str | None:
    """The record's language: `wanted` (cfg.lang), else the row's `lang`, else "en".

    Returns None when the row declares another language than `wanted`: such rows are filtered out (and
    counted as `other_lang`) rather than relabelled, which would mislabel a multilingual source.
    """
    declared = optional(row, key, "a string", origin=origin)
    if wanted is not None:
        return None if declared is not None and declared != wanted else wanted
    return declared or "en"


def row_source_id(row: dict, *, origin: str, keys: tuple[str, ...], fallback: Any) -> str:
    """The first of `keys` present in the row (string or integer), else a hash of `fallback`."""
    for key in keys:
        value = optional(row, key, "a string or an integer", origin=origin)
        if value is None:
            continue
        if isinstance(value, str) and not value.strip():
            raise InvalidRecord(origin, "wrong_type", f"field {key!r} is an empty string")
        return str(value)
    return stable_id(fallback)


# --- conversations -------------------------------------------------------------------------------------------


def check_message(message: Any, *, origin: str, where: str) -> dict:
    """One message on its own: an object with a known role and non-empty string content."""
    if not isinstance(message, dict):
        raise InvalidRecord(origin, "wrong_type", f"{where} must be an object, got {_type_name(message)}")
    for key in ("role", "content"):
        if message.get(key) is None:
            raise InvalidRecord(origin, "missing_field", f"{where} has no {key!r}")
    role, content = message["role"], message["content"]
    if not isinstance(role, str):
        raise InvalidRecord(origin, "wrong_type", f"{where}: role must be a string, got {_type_name(role)}")
    if role not in ROLES:
        raise InvalidRecord(
            origin,
            "unknown_role",
            f"{where}: unknown role {preview(role)} (expected system, user or assistant)",
        )
    if not isinstance(content, str):
        raise InvalidRecord(
            origin, "wrong_type", f"{where}: content must be a string, got {_type_name(content)}"
        )
    if not content.strip():
        raise InvalidRecord(origin, "empty_content", f"{where} ({role}) has empty content")
    return {"role": role, "content": content}


def check_messages(
    messages: Any, *, origin: str, what: str = "messages", last_role: str = "assistant"
) -> tuple[dict, ...]:
    """Validate a conversation and return it as a tuple of {"role", "content"} dicts.

    Other keys of a message (e.g. `name`, `tool_calls`) are not carried over. Content is kept exactly as
    given (no stripping); whitespace-only content is an error.
    """
    if not isinstance(messages, (list, tuple)):
        raise InvalidRecord(
            origin, "wrong_type", f"{what} must be a list of messages, got {_type_name(messages)}"
        )
    if not messages:
        raise InvalidRecord(origin, "empty_messages", f"{what} is empty")
    out = [check_message(message, origin=origin, where=f"{what}[{i}]") for i, message in enumerate(messages)]
    roles = [m["role"] for m in out]
    if "system" in roles[1:]:
        raise InvalidRecord(
            origin,
            "system_not_first",
            f"{what}[{roles.index('system', 1)}]: a system message may only come first",
        )
    turns = roles[1:] if roles[0] == "system" else roles
    if "user" not in turns:
        raise InvalidRecord(origin, "no_user_turn", f"{what} has no user turn")
    if turns[0] != "user":
        raise InvalidRecord(
            origin, "first_turn_not_user", f"{what}: the first turn must be user, got {turns[0]}"
        )
    offset = len(roles) - len(turns)
    for i in range(1, len(turns)):
        if turns[i] == turns[i - 1]:
            raise InvalidRecord(
                origin,
                "consecutive_same_role",
                f"{what}[{offset + i - 1}] and [{offset + i}] are both {turns[i]} (turns must alternate)",
            )
    if roles[-1] != last_role:
        reason = "not_ending_with_assistant" if last_role == "assistant" else "prompt_not_ending_with_user"
        raise InvalidRecord(
            origin, reason, f"{what} must end with {_ARTICLE[last_role]} {last_role} turn, got {roles[-1]}"
        )
    return tuple(out)
