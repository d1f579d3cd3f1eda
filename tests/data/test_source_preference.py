"""`preference` format: TRL-style prompt/chosen/rejected rows -> PreferenceRecords."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from data.config import SourceConfig
from data.errors import DataError
from data.records import PreferenceRecord
from data.sources import load_source


def m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def load_one(tmp_path: Path, row: dict, **cfg) -> PreferenceRecord:
    (record,), _ = load_source(
        SourceConfig(path=write_jsonl(tmp_path / "p.jsonl", [row]), format="preference", **cfg)
    )
    return record


def test_standard_format(tmp_path: Path) -> None:
    record = load_one(
        tmp_path, {"prompt": "Sano hei", "chosen": "Hei!", "rejected": "En.", "lang": "fi", "prompt_id": 12}
    )
    assert record == PreferenceRecord(
        prompt=(m("user", "Sano hei"),),
        chosen="Hei!",
        rejected="En.",
        lang="fi",
        source_id="12",
        origin=f"{tmp_path / 'p.jsonl'}:1",
    )


def test_conversational_format(tmp_path: Path) -> None:
    prompt = [m("system", "Be nice."), m("user", "Hi"), m("assistant", "Hello"), m("user", "Joke?")]
    row = {"prompt": prompt, "chosen": [m("assistant", "Knock knock.")], "rejected": [m("assistant", "No.")]}
    record = load_one(tmp_path, row)
    assert record.prompt == tuple(prompt) and (record.chosen, record.rejected) == ("Knock knock.", "No.")


def test_full_conversations_repeating_the_prompt(tmp_path: Path) -> None:
    # HuggingFaceH4/ultrafeedback_binarized: prompt string, chosen/rejected the whole conversation.
    row = {
        "prompt": "Why?",
        "chosen": [m("user", "Why?"), m("assistant", "Because.")],
        "rejected": [m("user", "Why?"), m("assistant", "Dunno.")],
    }
    record = load_one(tmp_path, row)
    assert (record.prompt, record.chosen, record.rejected) == ((m("user", "Why?"),), "Because.", "Dunno.")


def test_implicit_prompt(tmp_path: Path) -> None:
    row = {
        "chosen": [m("user", "Q"), m("assistant", "good")],
        "rejected": [m("user", "Q"), m("assistant", "bad")],
    }
    record = load_one(tmp_path, row)
    assert record.prompt == (m("user", "Q"),) and record.chosen == "good"


@pytest.mark.parametrize(
    ("row", "reason", "words"),
    [
        (
            {"prompt": "Why?", "chosen": [m("user", "Other?"), m("assistant", "a")], "rejected": "b"},
            "prompt_mismatch",
            "chosen: the turns before the completion differ from the prompt",
        ),
        (
            {
                "chosen": [m("user", "Q1"), m("assistant", "a")],
                "rejected": [m("user", "Q2"), m("assistant", "b")],
            },
            "prompt_mismatch",
            "must share the turns before the completion",
        ),
        ({"chosen": "a", "rejected": "b"}, "missing_field", "missing field 'prompt'"),
        (
            {"prompt": "p", "chosen": [m("user", "a")], "rejected": "b"},
            "not_ending_with_assistant",
            "chosen must end with an assistant turn, got user",
        ),
        ({"prompt": "p", "chosen": [], "rejected": "b"}, "empty_messages", "field 'chosen' is an empty list"),
        ({"prompt": "p", "chosen": "a", "rejected": "  "}, "empty_content", "field 'rejected' is empty"),
        (
            {"prompt": " ", "chosen": "a", "rejected": "b"},
            "empty_content",
            "prompt[0] (user) has empty content",
        ),
        (
            {"prompt": [m("user", "p")], "chosen": [m("assistant", "x")], "rejected": [m("assistant", "x")]},
            "chosen_equals_rejected",
            "chosen and rejected are identical",
        ),
        (
            {"prompt": 5, "chosen": "a", "rejected": "b"},
            "wrong_type",
            "field 'prompt' must be a string or a list",
        ),
        (
            {"prompt": [m("critic", "p")], "chosen": "a", "rejected": "b"},
            "unknown_role",
            "unknown role 'critic'",
        ),
    ],
)
def test_invalid_rows(tmp_path: Path, row: dict, reason: str, words: str) -> None:
    good = {"prompt": "ok", "chosen": "yes", "rejected": "no"}
    path = write_jsonl(tmp_path / "p.jsonl", [good, good, row])
    with pytest.raises(DataError) as info:
        load_source(SourceConfig(path=path, format="preference"))
    assert str(info.value).startswith(f"{path}:3: ") and words in str(info.value), str(info.value)
    records, report = load_source(SourceConfig(path=path, format="preference"), on_invalid="skip")
    assert len(records) == 2 and report.skipped == collections.Counter({reason: 1})
