"""Bad input is never silently mangled: one-line errors with file and line, or counted skips by reason."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from data.config import SourceConfig
from data.errors import DataError
from data.sources import load_source

GOOD_CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
GOOD_PAIR = {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No."}


def chat(*turns: tuple[str, object]) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


def write(path: Path, lines: list) -> str:
    """Write rows (dicts -> JSON) or raw str/bytes lines; returns the path as a string."""
    blob = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        blob += (line.encode() if isinstance(line, str) else line) + b"\n"
    path.write_bytes(blob)
    return str(path)


# (case id, format, bad line, reason, words of the message). The bad row is always line 2 of 3.
CASES = [
    ("malformed_json", "messages", '{"messages": [', "malformed_json", "malformed JSON"),
    ("non_utf8", "messages", b'{"messages": "caf\xe9"}', "not_utf8", "not valid UTF-8 (byte 0xe9"),
    ("not_an_object", "messages", "[1, 2]", "wrong_type", "must be a JSON object"),
    ("missing_field", "messages", {"conversation": []}, "missing_field", "missing field 'messages'"),
    ("messages_not_list", "messages", {"messages": "Hi"}, "wrong_type", "field 'messages' must be a list"),
    (
        "content_not_str",
        "messages",
        chat(("user", 5), ("assistant", "x")),
        "wrong_type",
        "content must be a string",
    ),
    ("missing_content", "messages", {"messages": [{"role": "user"}]}, "missing_field", "has no 'content'"),
    ("unknown_role", "messages", chat(("user", "a"), ("bot", "b")), "unknown_role", "unknown role 'bot'"),
    (
        "empty_content",
        "messages",
        chat(("user", "  \n"), ("assistant", "b")),
        "empty_content",
        "empty content",
    ),
    ("no_user_turn", "messages", chat(("system", "s"), ("assistant", "b")), "no_user_turn", "no user turn"),
    (
        "ends_with_user",
        "messages",
        chat(("user", "a"), ("assistant", "b"), ("user", "c")),
        "not_ending_with_assistant",
        "must end with an assistant turn",
    ),
    (
        "consecutive",
        "messages",
        chat(("user", "a"), ("user", "b"), ("assistant", "c")),
        "consecutive_same_role",
        "both user",
    ),
    (
        "system_late",
        "messages",
        chat(("user", "a"), ("system", "s"), ("assistant", "c")),
        "system_not_first",
        "system message may only come first",
    ),
    ("empty_messages", "messages", {"messages": []}, "empty_messages", "messages is empty"),
    ("lang_not_str", "messages", dict(GOOD_CHAT, lang=1), "wrong_type", "field 'lang' must be a string"),
    (
        "chosen_eq_rejected",
        "preference",
        {"prompt": "p", "chosen": "Same", "rejected": "Same "},
        "chosen_equals_rejected",
        "chosen and rejected are identical",
    ),
    (
        "pref_missing",
        "preference",
        {"prompt": "p", "chosen": "a"},
        "missing_field",
        "missing field 'rejected'",
    ),
    (
        "pref_prompt_ends_assistant",
        "preference",
        {
            "prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "chosen": "c",
            "rejected": "d",
        },
        "prompt_not_ending_with_user",
        "prompt must end with a user turn",
    ),
    (
        "pref_chosen_type",
        "preference",
        {"prompt": "p", "chosen": 3, "rejected": "d"},
        "wrong_type",
        "field 'chosen' must be a string or a list of messages, got int",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_names_file_and_line(tmp_path: Path, case) -> None:
    _, fmt, bad, _, words = case
    good = GOOD_CHAT if fmt == "messages" else GOOD_PAIR
    path = write(tmp_path / "rows.jsonl", [good, bad, good])
    with pytest.raises(DataError) as info:
        load_source(SourceConfig(path=path, format=fmt))
    message = str(info.value)
    assert message.startswith(f"{path}:2: "), message
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_skip_counts_reason(tmp_path: Path, case) -> None:
    _, fmt, bad, reason, _ = case
    good = GOOD_CHAT if fmt == "messages" else GOOD_PAIR
    path = write(tmp_path / "rows.jsonl", [good, bad, good])
    records, report = load_source(SourceConfig(path=path, format=fmt), on_invalid="skip")
    assert [r.origin for r in records] == [f"{path}:1", f"{path}:3"]
    assert report.skipped == collections.Counter({reason: 1})
    assert report.examples == {reason: f"{path}:2"}
    assert (report.num_rows, report.num_records) == (3, 2)


@pytest.mark.parametrize("on_invalid", ["error", "skip"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_missing_file_is_file_level(tmp_path: Path, monkeypatch, on_invalid: str, suffix: str) -> None:
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("a missing local file must never become a hub lookup")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    path = str(tmp_path / f"nope{suffix}")
    with pytest.raises(DataError, match=r"nope\.\w+: file not found$"):
        load_source(SourceConfig(path=path, format="messages"), on_invalid=on_invalid)


@pytest.mark.parametrize("path", ["./rows", "data/missing.jsonl", "missing.JSON", "~/no-such-sisu-file"])
def test_relative_missing_paths_are_local(monkeypatch, path: str) -> None:
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("hub lookup"))
    with pytest.raises(DataError, match="file not found"):
        load_source(SourceConfig(path=path, format="messages"))


@pytest.mark.parametrize("on_invalid", ["error", "skip"])
@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_empty_file_is_file_level(tmp_path: Path, on_invalid: str, content: bytes, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: file is empty$"):
        load_source(SourceConfig(path=str(path), format="messages"), on_invalid=on_invalid)


def test_only_invalid_rows_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", ["{oops", {"messages": []}])
    with pytest.raises(DataError) as info:
        load_source(SourceConfig(path=path, format="messages"), on_invalid="skip")
    assert str(info.value).startswith(f"{path}: no usable records in 2 rows")
    assert "malformed_json=1" in str(info.value) and "empty_messages=1" in str(info.value)


def test_first_error_wins_and_later_lines_are_not_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.jsonl", [GOOD_CHAT, GOOD_CHAT, GOOD_CHAT, "not json", {"messages": 1}])
    with pytest.raises(DataError, match=r"rows\.jsonl:4: malformed JSON"):
        load_source(SourceConfig(path=path, format="messages"))


def test_skip_counts_several_reasons(tmp_path: Path) -> None:
    path = write(
        tmp_path / "rows.jsonl",
        [
            "{",
            GOOD_CHAT,
            chat(("user", "a"), ("bot", "b")),
            b"\xff\xfe",
            chat(("user", "a"), ("wizard", "b")),
        ],
    )
    records, report = load_source(SourceConfig(path=path, format="messages"), on_invalid="skip")
    assert len(records) == 1
    assert report.skipped == collections.Counter(malformed_json=1, unknown_role=2, not_utf8=1)
    assert report.examples["unknown_role"] == f"{path}:3"  # the first one seen


def test_unknown_on_invalid_value(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.jsonl", [GOOD_CHAT])
    with pytest.raises(ValueError, match="on_invalid"):
        load_source(SourceConfig(path=path, format="messages"), on_invalid="ignore")
