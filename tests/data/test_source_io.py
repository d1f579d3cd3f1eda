"""Reading rows: JSON lines, JSON arrays, parquet, hub ids (faked: tests never touch the hub)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from data.config import SourceConfig
from data.errors import DataError
from data.io import looks_local, read_rows
from data.sources import load_source

CHAT = {
    "messages": [{"role": "user", "content": "Hei"}, {"role": "assistant", "content": "Moi!"}],
    "lang": "fi",
}


def test_jsonl_lines_are_numbered_physically(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    # A BOM, a CRLF line end and blank lines must not shift line numbers or break parsing.
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(CHAT).encode() + b"\r\n\n  \n" + json.dumps(CHAT).encode())
    rows = list(read_rows(str(path)))
    assert [row.origin for row in rows] == [f"{path}:1", f"{path}:4"]
    assert rows[0].data == CHAT and rows[0].error is None


def test_json_array_elements_get_their_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text("[\n  " + json.dumps(CHAT) + ",\n\n  " + json.dumps(CHAT) + "\n]\n", encoding="utf-8")
    assert [row.origin for row in read_rows(str(path))] == [f"{path}:2", f"{path}:4"]


def test_json_file_may_hold_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(CHAT) + "\n" + json.dumps(CHAT) + "\n", encoding="utf-8")
    assert [row.origin for row in read_rows(str(path))] == [f"{path}:1", f"{path}:2"]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[\n" + json.dumps(CHAT) + ",\n{bad}\n]", 3, "malformed JSON"),
        ("[\n" + json.dumps(CHAT) + "\n" + json.dumps(CHAT) + "]", 3, "expected ',' or ']'"),
        ("[" + json.dumps(CHAT) + "]\n\nextra", 1, "extra data after the array"),
    ],
)
def test_json_array_syntax_errors_are_file_level(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "rows.json"
    path.write_text(text, encoding="utf-8")
    for on_invalid in ("error", "skip"):
        with pytest.raises(DataError) as info:
            load_source(SourceConfig(path=str(path), format="messages"), on_invalid=on_invalid)
        assert str(info.value).startswith(f"{path}:{line}: ") and words in str(info.value)


def test_json_array_non_object_element_is_row_level_and_bad_bytes_file_level(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text("[\n" + json.dumps(CHAT) + ',\n"just a string"\n]', encoding="utf-8")
    records, report = load_source(SourceConfig(path=str(path), format="messages"), on_invalid="skip")
    assert len(records) == 1 and report.skipped == collections.Counter(wrong_type=1)
    assert report.examples == {"wrong_type": f"{path}:3"}
    path.write_bytes(b"[\n" + json.dumps(CHAT).encode() + b',\n{"messages": "caf\xe9"}\n]')
    with pytest.raises(DataError, match=r"rows\.json:3: not valid UTF-8 \(byte 0xe9\)"):
        load_source(SourceConfig(path=str(path), format="messages"), on_invalid="skip")


def test_json_empty_array_and_single_object(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[ ]", encoding="utf-8")
    with pytest.raises(DataError, match="empty array"):
        list(read_rows(str(empty)))
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"data": [CHAT]}, indent=2), encoding="utf-8")
    with pytest.raises(DataError, match="single JSON object"):
        list(read_rows(str(single)))


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'"):
        list(read_rows(str(path)))


def test_parquet_rows_are_named_by_record_index(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    bad = {"messages": [{"role": "user", "content": "Hei"}, {"role": "robot", "content": "?"}], "lang": "fi"}
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([CHAT, CHAT, bad]), path)
    with pytest.raises(DataError, match=r"rows\.parquet: record 2: messages\[1\]: unknown role 'robot'"):
        load_source(SourceConfig(path=str(path), format="messages"))
    records, report = load_source(SourceConfig(path=str(path), format="messages"), on_invalid="skip")
    assert [r.origin for r in records] == [f"{path}: record 0", f"{path}: record 1"]
    assert records[0].messages == tuple(CHAT["messages"]) and records[0].lang == "fi"
    assert report.skipped == collections.Counter(unknown_role=1)


def test_parquet_empty_and_corrupt(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"messages": pa.array([], type=pa.list_(pa.string()))}), empty)
    with pytest.raises(DataError, match="file is empty"):
        list(read_rows(str(empty)))
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"definitely not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        list(read_rows(str(corrupt)))


def test_hub_ids_go_to_load_dataset_with_name_and_split(monkeypatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, *, split):
        calls.append((path, name, split))
        return [CHAT, CHAT]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    cfg = SourceConfig(path="someone/chats", format="messages", name="fi", split="train_sft")
    records, report = load_source(cfg)
    assert calls == [("someone/chats", "fi", "train_sft")]
    assert [r.origin for r in records] == ["someone/chats: record 0", "someone/chats: record 1"]
    assert report.num_rows == 2


def test_hub_failure_is_a_one_line_data_error(monkeypatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the hub\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"^someone/chats: could not load dataset .*Couldn't reach the hub$"):
        list(read_rows("someone/chats"))


def test_looks_local() -> None:
    assert (
        looks_local("x.jsonl")
        and looks_local("dir/x.PARQUET")
        and looks_local("./x")
        and looks_local("/abs/x")
    )
    assert not looks_local("sablo/oasst2_curated") and not looks_local("nvidia/HelpSteer2")
