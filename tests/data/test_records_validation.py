"""Record invariants (check_messages), LoadReport bookkeeping and error objects."""

from __future__ import annotations

import collections
import pickle

import pytest

from data.errors import DataError, InvalidRecord
from data.records import LoadReport, check_messages, stable_id


def m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def reason_of(messages, **kwargs) -> str:
    with pytest.raises(InvalidRecord) as info:
        check_messages(messages, origin="f.jsonl:7", **kwargs)
    assert str(info.value).startswith("f.jsonl:7: ")
    return info.value.reason


def test_valid_conversations() -> None:
    assert check_messages([m("user", "a"), m("assistant", "b")], origin="o") == (
        m("user", "a"),
        m("assistant", "b"),
    )
    chat = [m("system", "s"), m("user", "a"), m("assistant", "b"), m("user", "c"), m("assistant", "d")]
    assert check_messages(chat, origin="o") == tuple(chat)
    assert check_messages([m("system", "s"), m("user", "a")], origin="o", what="prompt", last_role="user")


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ("hello", "wrong_type"),
        ([], "empty_messages"),
        (["hello"], "wrong_type"),
        ([{"content": "a"}], "missing_field"),
        ([{"role": "user", "content": None}], "missing_field"),
        ([{"role": 1, "content": "a"}], "wrong_type"),
        ([m("human", "a"), m("assistant", "b")], "unknown_role"),
        ([m("user", "\t\n "), m("assistant", "b")], "empty_content"),
        ([m("assistant", "b")], "no_user_turn"),
        ([m("system", "s")], "no_user_turn"),
        ([m("assistant", "hi"), m("user", "a"), m("assistant", "b")], "first_turn_not_user"),
        ([m("user", "a"), m("system", "s"), m("assistant", "b")], "system_not_first"),
        ([m("system", "s"), m("system", "t"), m("user", "a"), m("assistant", "b")], "system_not_first"),
        ([m("user", "a"), m("assistant", "b"), m("assistant", "c")], "consecutive_same_role"),
        ([m("user", "a"), m("assistant", "b"), m("user", "c")], "not_ending_with_assistant"),
    ],
)
def test_invalid_conversations(messages, reason: str) -> None:
    assert reason_of(messages) == reason


def test_prompt_must_end_with_user() -> None:
    assert (
        reason_of([m("user", "a"), m("assistant", "b")], what="prompt", last_role="user")
        == "prompt_not_ending_with_user"
    )


def test_consecutive_message_indices_count_the_system_message() -> None:
    with pytest.raises(InvalidRecord, match=r"messages\[2\] and \[3\] are both assistant"):
        check_messages(
            [m("system", "s"), m("user", "a"), m("assistant", "b"), m("assistant", "c")], origin="o"
        )


def test_load_report_drop_reject_and_summary() -> None:
    report = LoadReport(source="x.jsonl", num_rows=5)
    report.drop("unpaired", "x.jsonl:2")
    report.drop("unpaired", "x.jsonl:4")
    report.drop("extra_response", "x.jsonl:5", count=0)  # nothing to count: no entry
    error = InvalidRecord("x.jsonl:3", "malformed_json", "malformed JSON (Expecting value at column 1)")
    with pytest.raises(DataError, match=r"^x\.jsonl:3: malformed JSON"):
        report.reject(error, on_invalid="error")
    report.reject(error, on_invalid="skip")
    report.num_records = 2
    assert report.skipped == collections.Counter(unpaired=2, malformed_json=1)
    assert report.examples == {"unpaired": "x.jsonl:2", "malformed_json": "x.jsonl:3"}
    assert report.summary() == (
        "x.jsonl: 5 rows -> 2 records; left out: malformed_json=1 (e.g. x.jsonl:3), unpaired=2 (e.g. x.jsonl:2)"
    )
    report.num_selected = 1
    assert report.summary().startswith("x.jsonl: 5 rows -> 2 records (1 selected); ")


def test_invalid_record_is_a_picklable_one_line_data_error() -> None:
    error = InvalidRecord("a.jsonl:1", "unknown_role", "unknown role 'bot'")
    assert isinstance(error, DataError) and isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert (str(clone), clone.reason, clone.origin) == (
        "a.jsonl:1: unknown role 'bot'",
        "unknown_role",
        "a.jsonl:1",
    )


def test_stable_id_is_content_addressed() -> None:
    assert stable_id("B?") == stable_id("B?") != stable_id("B? ")
    assert stable_id({"b": 1, "a": 2}) == stable_id({"a": 2, "b": 1})  # key order does not matter
