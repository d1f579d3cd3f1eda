"""`helpsteer2` format: consecutive rows of a prompt -> one preference pair by helpfulness."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import pytest

from data.config import SourceConfig
from data.errors import DataError
from data.io import read_rows
from data.records import LoadReport
from data.sources import helpsteer2, load_source

MULTI_TURN = (
    "Hi there\n<extra_id_1>Assistant\nHello! How can I help?\n<extra_id_1>User\n  Tell me a joke.  \n"
)


def row(prompt: str, response: str, helpfulness, **extra) -> dict:
    scores = {"correctness": 3, "coherence": 4, "complexity": 1, "verbosity": 2}
    return {"prompt": prompt, "response": response, "helpfulness": helpfulness, **scores, **extra}


ROWS = [
    row("A?", "A good", 3, source_id="hs-a"),  # 1  pair: chosen is the first row
    row("A?", "A bad", 1, source_id="hs-a"),  # 2
    row("B?", "B bad", 2),  # 3  pair: chosen is the second row
    row("B?", "B good", 4),  # 4
    row("C?", "C one", 2),  # 5  tie -> dropped
    row("C?", "C two", 2),  # 6
    row("D?", "D alone", 4),  # 7  unpaired
    row("E?", "E low", 1),  # 8  three rows: max (line 9) vs min (line 8); line 10 is extra
    row("E?", "E best", 4),  # 9
    row("E?", "E middle", 2),  # 10
    row(MULTI_TURN, " Why did the chicken... ", 3),  # 11 multi-turn, margin 1
    row(MULTI_TURN, "No.", 2),  # 12
    row("A?", "A again, not next to the others", 4),  # 13 unpaired (groups are consecutive runs)
]


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return str(path)


def summary(records) -> list[tuple]:
    return [(r.prompt[-1]["content"], r.chosen, r.rejected) for r in records]


def test_pairs_ties_unpaired_and_groups_of_three(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "hs2.jsonl", ROWS)
    records, report = load_source(SourceConfig(path=path, format="helpsteer2"))
    assert summary(records) == [
        ("A?", "A good", "A bad"),
        ("B?", "B good", "B bad"),
        ("E?", "E best", "E low"),
        ("Tell me a joke.", " Why did the chicken... ", "No."),
    ]
    assert [r.origin for r in records] == [f"{path}:1", f"{path}:3", f"{path}:8", f"{path}:11"]
    assert report.num_rows == 13 and report.num_records == 4
    assert report.skipped == collections.Counter(tie_or_small_margin=1, unpaired=2, extra_response=1)
    assert report.examples == {
        "tie_or_small_margin": f"{path}:5",
        "unpaired": f"{path}:7",
        "extra_response": f"{path}:10",
    }


def test_multi_turn_prompt_is_split_into_messages(tmp_path: Path) -> None:
    records, _ = load_source(
        SourceConfig(path=write_jsonl(tmp_path / "hs2.jsonl", ROWS), format="helpsteer2")
    )
    assert records[3].prompt == (
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    )
    assert records[0].prompt == ({"role": "user", "content": "A?"},)


def test_source_id_column_else_hash_of_prompt_and_lang(tmp_path: Path) -> None:
    records, _ = load_source(
        SourceConfig(path=write_jsonl(tmp_path / "hs2.jsonl", ROWS), format="helpsteer2")
    )
    assert records[0].source_id == "hs-a"
    assert records[1].source_id == hashlib.sha256(b'"B?"').hexdigest()[:16]
    assert {r.lang for r in records} == {"en"}
    fi_rows = [row("Mitä?", "Hyvä", 4, lang="fi"), row("Mitä?", "Huono", 0, lang="fi")]
    records, _ = load_source(
        SourceConfig(path=write_jsonl(tmp_path / "fi.jsonl", fi_rows), format="helpsteer2")
    )
    assert records[0].lang == "fi"


@pytest.mark.parametrize(
    ("min_margin", "expected_prompts", "dropped"),
    [
        (2.0, ["A?", "B?", "E?"], 2),  # the multi-turn pair (3 vs 2) is too close now
        (3.0, ["E?"], 4),
        (0.0, ["A?", "B?", "C?", "E?", "Tell me a joke."], 0),  # ties kept, first row chosen
    ],
)
def test_min_margin(tmp_path: Path, min_margin: float, expected_prompts: list[str], dropped: int) -> None:
    path = write_jsonl(tmp_path / "hs2.jsonl", ROWS)
    records, report = load_source(SourceConfig(path=path, format="helpsteer2", min_margin=min_margin))
    assert [r.prompt[-1]["content"] for r in records] == expected_prompts
    assert report.skipped["tie_or_small_margin"] == dropped
    if min_margin == 0.0:
        assert (records[2].chosen, records[2].rejected) == ("C one", "C two")


@pytest.mark.parametrize(
    ("bad_rows", "line", "reason", "words"),
    [
        ([row("X?", "same", 4), row("X?", "same", 1)], 3, "chosen_equals_rejected", "identical"),
        ([row("X?", "x", None), row("X?", "y", 1)], 3, "missing_field", "field 'helpfulness' is null"),
        (
            [row("X?", "x", "4"), row("X?", "y", 1)],
            3,
            "wrong_type",
            "field 'helpfulness' must be a number, got str",
        ),
        (
            [row("X?", "x", 4), {"prompt": "X?", "helpfulness": 1}],
            4,
            "missing_field",
            "missing field 'response'",
        ),
        ([row("X?", "", 4), row("X?", "y", 1)], 3, "empty_content", "field 'response' is empty"),
        (
            [row("Q\n<extra_id_1>Assistant\nA", "x", 4), row("Q\n<extra_id_1>Assistant\nA", "y", 1)],
            3,
            "prompt_not_ending_with_user",
            "prompt must end with a user turn, got assistant",
        ),
        (
            [
                row("Q\n<extra_id_1>System\nS\n<extra_id_1>User\nU", "x", 4),
                row("Q\n<extra_id_1>System\nS\n<extra_id_1>User\nU", "y", 1),
            ],
            3,
            "unknown_role",
            "unknown turn marker '<extra_id_1>System'",
        ),
        (
            [
                row("Q\n<extra_id_1>Assistant\n \n<extra_id_1>User\nU", "x", 4),
                row("Q\n<extra_id_1>Assistant\n \n<extra_id_1>User\nU", "y", 1),
            ],
            3,
            "empty_content",
            "prompt[1] (assistant) has empty content",
        ),
        (
            [row("Q\n<extra_id_1>User\nU2", "x", 4), row("Q\n<extra_id_1>User\nU2", "y", 1)],
            3,
            "consecutive_same_role",
            "both user",
        ),
    ],
)
def test_invalid_pairs(tmp_path: Path, bad_rows: list, line: int, reason: str, words: str) -> None:
    rows = [
        row("OK?", "good", 4),
        row("OK?", "bad", 0),
        *bad_rows,
        row("OK2?", "good", 3),
        row("OK2?", "bad", 1),
    ]
    path = write_jsonl(tmp_path / "hs2.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_source(SourceConfig(path=path, format="helpsteer2"))
    assert str(info.value).startswith(f"{path}:{line}: ") and words in str(info.value)
    records, report = load_source(SourceConfig(path=path, format="helpsteer2"), on_invalid="skip")
    assert [r.prompt[-1]["content"] for r in records] == ["OK?", "OK2?"]
    assert report.skipped[reason] == 1


def test_invalid_row_splits_its_group(tmp_path: Path) -> None:
    # Pairing across a skipped row could pair responses that are not of the same prompt run: both neighbours
    # become unpaired instead.
    rows = [row("X?", "x", 4), "{broken", row("X?", "y", 1)]
    records_path = write_jsonl(tmp_path / "hs2.jsonl", [*rows, row("Y?", "a", 4), row("Y?", "b", 0)])
    records, report = load_source(SourceConfig(path=records_path, format="helpsteer2"), on_invalid="skip")
    assert summary(records) == [("Y?", "a", "b")]
    assert report.skipped == collections.Counter(unpaired=2, malformed_json=1)


def test_shared_sample_schema(shared: Path, tmp_path: Path) -> None:
    """The real HelpSteer2 schema: one row, so one unpaired row and no pair."""
    path = str(shared / "samples" / "helpsteer2_sample.jsonl")
    report = LoadReport(source=path)
    cfg = SourceConfig(path=path, format="helpsteer2")
    assert list(helpsteer2.load(read_rows(path), cfg=cfg, report=report, on_invalid="error")) == []
    assert report.skipped == collections.Counter(unpaired=1) and report.examples == {"unpaired": f"{path}:1"}
    with pytest.raises(DataError, match=r"no usable records in 1 rows \(left out: unpaired=1"):
        load_source(cfg)
    # The same row twice with a lower score becomes a pair: the schema parses fully.
    first = json.loads(Path(path).read_text(encoding="utf-8").splitlines()[0])
    worse = dict(first, response="C# is a kind of coffee.", helpfulness=0)
    (record,), _ = load_source(
        SourceConfig(path=write_jsonl(tmp_path / "pair.jsonl", [first, worse]), format="helpsteer2")
    )
    assert record.prompt == ({"role": "user", "content": "c#"},) and record.chosen == first["response"]
