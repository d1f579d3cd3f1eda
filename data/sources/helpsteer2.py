"""`helpsteer2` format: nvidia/HelpSteer2 rows, paired into preferences by helpfulness.

Rows: prompt, response, helpfulness, correctness, coherence, complexity, verbosity (optional `lang`,
`source_id`). The dataset lists the responses of a prompt on consecutive rows, so consecutive rows with an
identical prompt form a group:
- a group of two gives one pair: chosen = the higher helpfulness;
- a group of more than two gives one pair from the most and the least helpful response (the first such row on
  equal scores); the rows in between are counted as `extra_response`;
- a single row is counted as `unpaired`.
A pair whose helpfulness gap is below cfg.min_margin is counted as `tie_or_small_margin` (per pair). The
default margin 1.0 drops exactly the ties of the integer 0-4 scores, the rule behind the paper's 7,221 pairs
from the train split (a count not checked here: the tests never touch the hub). With min_margin 0, ties are
kept with the group's first row as chosen. An invalid pair counts once under its reason.

Multi-turn prompts hold the earlier turns inside `prompt`, separated by `<extra_id_1>User` and
`<extra_id_1>Assistant` markers; the text before the first marker is a user turn. Turns are stripped of
surrounding whitespace; responses are kept exactly as given. The source_id is the `source_id` column of the
group's first row, else a hash of the prompt text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from data.config import SourceConfig
from data.errors import InvalidRecord
from data.io import Row
from data.records import LoadReport, PreferenceRecord, check_messages, require, row_lang, row_source_id

MARKER = re.compile(r"<extra_id_1>(\w*)")
TURN_ROLES = {"User": "user", "Assistant": "assistant"}


def split_prompt(prompt: str, *, origin: str) -> tuple[dict, ...]:
    """HelpSteer2's flattened conversation -> messages ending with the user turn being answered."""
    pieces = MARKER.split(prompt)
    # re.split with one group alternates: text, role, text, role, text ...
    messages = [{"role": "user", "content": pieces[0].strip()}]
    for marker, text in zip(pieces[1::2], pieces[2::2]):
        if marker not in TURN_ROLES:
            raise InvalidRecord(origin, "unknown_role", f"prompt: unknown turn marker '<extra_id_1>{marker}'")
        messages.append({"role": TURN_ROLES[marker], "content": text.strip()})
    return check_messages(messages, origin=origin, what="prompt", last_role="user")


def _groups(
    rows: Iterable[Row], *, report: LoadReport, on_invalid: str
) -> Iterator[list[tuple[Row, str, float]]]:
    """Runs of consecutive readable rows with the same prompt, as (row, response, helpfulness).

    An invalid row (skipped) ends the current run: pairing across it could pair responses of different
    prompts that only look adjacent.
    """
    group: list[tuple[Row, str, float]] = []
    for row in rows:
        try:
            if row.error is not None:
                raise row.error
            prompt = require(row.data, "prompt", "a string", origin=row.origin)
            response = require(row.data, "response", "a string", origin=row.origin)
            helpfulness = require(row.data, "helpfulness", "a number", origin=row.origin)
            if not prompt.strip():
                raise InvalidRecord(row.origin, "empty_content", "field 'prompt' is empty")
            if not response.strip():
                raise InvalidRecord(row.origin, "empty_content", "field 'response' is empty")
        except InvalidRecord as error:
            report.reject(error, on_invalid=on_invalid)
            if group:
                yield group
            group = []
            continue
        if group and group[0][0].data["prompt"] != prompt:
            yield group
            group = []
        group.append((row, response, float(helpfulness)))
    if group:
        yield group


def _pair(
    group: list[tuple[Row, str, float]], *, cfg: SourceConfig, report: LoadReport
) -> PreferenceRecord | None:
    first = group[0][0]
    origin = first.origin
    record_lang = row_lang(first.data, wanted=cfg.lang, origin=origin)
    if record_lang is None:
        report.drop("other_lang", origin, count=len(group))
        return None
    if len(group) == 1:
        report.drop("unpaired", origin)
        return None
    # max/min return the first of equal scores, so ties keep file order (the earlier row is chosen).
    best = max(group, key=lambda item: item[2])
    worst = min((item for item in group if item is not best), key=lambda item: item[2])
    extras = [item for item in group if item is not best and item is not worst]
    if extras:
        report.drop("extra_response", extras[0][0].origin, count=len(extras))
    if best[2] - worst[2] < cfg.min_margin:
        report.drop("tie_or_small_margin", origin)
        return None
    prompt = split_prompt(first.data["prompt"], origin=origin)
    if best[1].strip() == worst[1].strip():
        raise InvalidRecord(origin, "chosen_equals_rejected", "chosen and rejected responses are identical")
    source_id = row_source_id(first.data, origin=origin, keys=("source_id",), fallback=first.data["prompt"])
    return PreferenceRecord(
        prompt=prompt, chosen=best[1], rejected=worst[1], lang=record_lang, source_id=source_id, origin=origin
    )


def load(
    rows: Iterable[Row], *, cfg: SourceConfig, report: LoadReport, on_invalid: str
) -> Iterator[PreferenceRecord]:
    """One PreferenceRecord per prompt group with a large enough helpfulness gap, in file order, as read."""
    for group in _groups(rows, report=report, on_invalid=on_invalid):
        try:
            record = _pair(group, cfg=cfg, report=report)
        except InvalidRecord as error:
            report.reject(error, on_invalid=on_invalid)
            continue
        if record is not None:
            yield record
