"""`language_contrast` format: translated rows as preference pairs that contrast language, not quality.

Reads the rows launch/translate.py writes (data/translate/items.py) and pairs each translated answer (chosen)
with the same answer in its original language (rejected), after the translated prompt: DPO on these pairs
teaches answering in the target language.

- chat rows: `messages` (list of {role, content, orig_content}; roles as in the `messages` format, ending with
  an assistant turn). prompt = the translated turns before the last assistant turn (earlier turns included);
  chosen = its `content`, rejected = its `orig_content` (required on that turn only).
- preference rows (no `messages`): `prompt` (a string, or a list of messages ending with a user turn; each
  message's `content` is used), `chosen` and `orig_chosen` (strings): chosen = `chosen`, rejected =
  `orig_chosen`, the same good answer in the original language. `rejected` and `orig_rejected` are not used.
- `lang`: the target language (the one chosen is in); cfg.lang overrides it. A row without `lang` needs
  cfg.lang (reason `missing_field`); rows in another language than cfg.lang are counted as `other_lang`.
- Optional id: `source_id`, else `prompt_id`, else `id`, else a hash of the prompt.

Example (chat row):

    {"source_id": "chat-0007", "lang": "fi", "messages": [
      {"role": "user", "content": "Miksi taivas on sininen?", "orig_content": "Why is the sky blue?"},
      {"role": "assistant", "content": "Auringonvalo siroaa ilmakehästä...",
       "orig_content": "Sunlight scatters in the atmosphere..."}]}

-> prompt [user "Miksi taivas on sininen?"], chosen "Auringonvalo siroaa...", rejected "Sunlight scatters...".

Pairs that would not contrast language are dropped by design, counted per row whatever data.on_invalid says,
checked in this order:
- `chosen_equals_rejected`: chosen and rejected are identical (ignoring surrounding whitespace), e.g. when the
  answer's role was not translated or the answer is code only;
- `chosen_not_in_target_language`: langdetect does not find chosen to be in the target language (including
  text it cannot classify: no letters);
- `rejected_in_target_language`: langdetect finds rejected to be in the target language.
Languages are detected (seeded, data/language.py) on the text outside fenced code blocks and inline code, which
stays verbatim in a translation and says nothing about its language. Invalid rows (missing or wrongly typed
fields, bad conversations) follow data.on_invalid like in every other format.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from data.config import SourceConfig
from data.errors import InvalidRecord
from data.io import Row
from data.language import is_language
from data.records import (
    LoadReport,
    PreferenceRecord,
    check_messages,
    optional,
    require,
    row_lang,
    row_source_id,
)
from data.sources.messages import load_each
from data.translate.segment import strip_code

ID_KEYS = ("source_id", "prompt_id", "id")


def _text(value: Any, *, what: str, origin: str) -> str:
    """`value` (present, not null) as a non-empty string; `what` names it in the error."""
    if not isinstance(value, str):
        raise InvalidRecord(origin, "wrong_type", f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidRecord(origin, "empty_content", f"{what} is empty")
    return value


def _chat_pair(row: dict, *, origin: str) -> tuple[tuple[dict, ...], str, str]:
    raw = require(row, "messages", "a list", origin=origin)
    messages = check_messages(raw, origin=origin)
    last = len(raw) - 1  # check_messages made sure it is an assistant message (a dict)
    original = raw[last].get("orig_content")
    if original is None:
        raise InvalidRecord(
            origin,
            "missing_field",
            f"messages[{last}] (the answer) has no 'orig_content' (not a translated row?)",
        )
    rejected = _text(original, what=f"messages[{last}].orig_content", origin=origin)
    return messages[:-1], messages[-1]["content"], rejected


def _preference_pair(row: dict, *, origin: str) -> tuple[tuple[dict, ...], str, str]:
    raw_prompt = require(row, "prompt", "a string or a list of messages", origin=origin)
    if isinstance(raw_prompt, str):
        raw_prompt = [{"role": "user", "content": raw_prompt}]
    prompt = check_messages(raw_prompt, origin=origin, what="prompt", last_role="user")
    chosen = _text(require(row, "chosen", "a string", origin=origin), what="field 'chosen'", origin=origin)
    original = require(row, "orig_chosen", "a string", origin=origin)
    return prompt, chosen, _text(original, what="field 'orig_chosen'", origin=origin)


def parse_row(row: dict, *, origin: str, lang: str | None) -> PreferenceRecord | str | None:
    """A validated PreferenceRecord; None if the row is in another language than `lang`; the reason
    (chosen_equals_rejected, chosen_not_in_target_language, rejected_in_target_language) if the pair does not
    contrast languages. Raises InvalidRecord for invalid rows."""
    if lang is None and row.get("lang") is None:
        raise InvalidRecord(
            origin, "missing_field", "missing field 'lang' (the target language; or set the source's lang)"
        )
    record_lang = row_lang(row, wanted=lang, origin=origin)
    if record_lang is None:
        return None
    if optional(row, "messages", "a list", origin=origin) is not None:
        prompt, chosen, rejected = _chat_pair(row, origin=origin)
    elif row.get("prompt") is not None:
        prompt, chosen, rejected = _preference_pair(row, origin=origin)
    else:
        raise InvalidRecord(
            origin,
            "missing_field",
            "missing field 'messages' (a translated chat) or 'prompt' (a translated preference pair)",
        )
    fallback = [[m["role"], m["content"]] for m in prompt]
    source_id = row_source_id(row, origin=origin, keys=ID_KEYS, fallback=fallback)
    if chosen.strip() == rejected.strip():
        return "chosen_equals_rejected"
    if not is_language(strip_code(chosen), record_lang):
        return "chosen_not_in_target_language"
    if is_language(strip_code(rejected), record_lang):
        return "rejected_in_target_language"
    return PreferenceRecord(
        prompt=prompt, chosen=chosen, rejected=rejected, lang=record_lang, source_id=source_id, origin=origin
    )


def load(
    rows: Iterable[Row], *, cfg: SourceConfig, report: LoadReport, on_invalid: str
) -> Iterator[PreferenceRecord]:
    """One PreferenceRecord per valid row whose answers contrast the target language with the original one, as
    they are read."""
    return load_each(rows, parse_row, lang=cfg.lang, report=report, on_invalid=on_invalid)
