"""`messages` format: HF chat rows (sablo/oasst2_curated style) -> ChatRecords."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import pytest

from data.config import SourceConfig
from data.records import ChatRecord, stable_id
from data.sources import load_source


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def msgs(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


CURATED_ROW = {  # the sablo/oasst2_curated schema: prompt, prompt_id, messages (extra keys are ignored)
    "prompt": "Kuinka paistan leipää?",
    "prompt_id": "0f3a",
    "messages": msgs(("user", "Kuinka paistan leipää?"), ("assistant", "Sekoita jauhot, vesi ja hiiva.")),
}


def test_row_becomes_record(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "fi.jsonl", [CURATED_ROW])
    records, report = load_source(SourceConfig(path=path, format="messages", lang="fi"))
    assert records == [
        ChatRecord(
            messages=(
                {"role": "user", "content": "Kuinka paistan leipää?"},
                {"role": "assistant", "content": "Sekoita jauhot, vesi ja hiiva."},
            ),
            lang="fi",
            source_id="0f3a",
            origin=f"{path}:1",
        )
    ]
    assert (report.source, report.num_rows, report.num_records, report.skipped) == (
        path,
        1,
        1,
        collections.Counter(),
    )


def test_multi_turn_with_system_and_content_kept_verbatim(tmp_path: Path) -> None:
    turns = msgs(
        ("system", "Be brief."),
        ("user", "  Hi\n"),
        ("assistant", "Hello."),
        ("user", "Bye"),
        ("assistant", "Bye!\n"),
    )
    for message in turns:
        message["name"] = "ignored"  # extra keys are not carried over
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": turns, "source_id": "s1"}])
    (record,), _ = load_source(SourceConfig(path=path, format="messages"))
    assert record.messages[1] == {"role": "user", "content": "  Hi\n"}
    assert [m["role"] for m in record.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert record.lang == "en"  # neither cfg.lang nor a row lang


def test_source_id_precedence_and_hash(tmp_path: Path) -> None:
    conv = msgs(("user", "a"), ("assistant", "b"))
    rows = [
        {"messages": conv, "source_id": "S", "prompt_id": "P", "id": "I"},
        {"messages": conv, "prompt_id": "P", "id": 7},
        {"messages": conv, "id": 7},
        {"messages": conv},
        {"messages": msgs(("user", "a"), ("assistant", "c"))},
    ]
    records, _ = load_source(SourceConfig(path=write_jsonl(tmp_path / "ids.jsonl", rows), format="messages"))
    ids = [r.source_id for r in records]
    assert ids[:3] == ["S", "P", "7"]
    # Stable across runs and machines: a sha256 prefix of the compact JSON of [role, content] pairs.
    assert ids[3] == hashlib.sha256(b'[["user","a"],["assistant","b"]]').hexdigest()[:16]
    assert ids[3] == stable_id([["user", "a"], ["assistant", "b"]]) and ids[4] != ids[3]


def test_lang_from_cfg_row_or_default_and_other_lang_filtered(tmp_path: Path) -> None:
    conv = msgs(("user", "a"), ("assistant", "b"))
    rows = [{"messages": conv, "lang": "fi"}, {"messages": conv, "lang": "en"}, {"messages": conv}]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    records, _ = load_source(SourceConfig(path=path, format="messages"))
    assert [r.lang for r in records] == ["fi", "en", "en"]
    records, report = load_source(SourceConfig(path=path, format="messages", lang="fi"))
    # The row without `lang` takes cfg.lang; the English row is left out and counted, not relabelled.
    assert [(r.lang, r.origin) for r in records] == [("fi", f"{path}:1"), ("fi", f"{path}:3")]
    assert report.skipped == collections.Counter(other_lang=1) and report.examples == {
        "other_lang": f"{path}:2"
    }


def test_rows_in_another_language_are_not_validated(tmp_path: Path) -> None:
    rows = [
        {"messages": msgs(("user", "a"), ("assistant", "b")), "lang": "fi"},
        {"messages": [], "lang": "de"},
    ]
    records, report = load_source(
        SourceConfig(path=write_jsonl(tmp_path / "x.jsonl", rows), format="messages", lang="fi")
    )
    assert len(records) == 1 and report.skipped == collections.Counter(other_lang=1)


@pytest.mark.parametrize("max_records", [1, 2, 5])
def test_max_records_keeps_the_first_and_counts_the_rest(tmp_path: Path, max_records: int) -> None:
    rows = [{"messages": msgs(("user", f"q{i}"), ("assistant", f"a{i}"))} for i in range(3)]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    records, report = load_source(SourceConfig(path=path, format="messages", max_records=max_records))
    kept = min(3, max_records)
    assert [r.messages[0]["content"] for r in records] == [f"q{i}" for i in range(kept)]
    assert report.num_records == kept and report.num_rows == 3
    assert report.skipped == (
        collections.Counter(beyond_max_records=3 - kept) if kept < 3 else collections.Counter()
    )


def test_records_are_frozen_and_picklable(tmp_path: Path) -> None:
    import dataclasses
    import pickle

    (record,), _ = load_source(
        SourceConfig(path=write_jsonl(tmp_path / "x.jsonl", [CURATED_ROW]), format="messages")
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.lang = "sv"
    assert pickle.loads(pickle.dumps(record)) == record
