"""`oasst_tree` format: raw OpenAssistant rows -> one best-ranked conversation per tree."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from data.config import SourceConfig
from data.errors import DataError
from data.sources import load_source

SAMPLE = "samples/oasst2_sample.jsonl"


def sample_lines(shared: Path) -> list[dict]:
    return [json.loads(line) for line in (shared / SAMPLE).read_text(encoding="utf-8").splitlines()]


def test_shared_sample_conversations(shared: Path) -> None:
    path = str(shared / SAMPLE)
    records, report = load_source(SourceConfig(path=path, format="oasst_tree"))
    # 34 message_tree_ids, but two of them are single rows without their root (both also failed review):
    # 32 trees have a root prompt, and each has a usable assistant reply.
    assert len(records) == 32
    assert report.num_rows == 293 and report.num_records == 32
    # Deleted: lines 74-83 (a whole branch of tree 52b26b9f), 130 (also failed review: counted once, as deleted)
    # and 253. Failed review, not deleted: lines 89, 98, 111, 153, 174, 215.
    assert report.skipped == collections.Counter(deleted=12, failed_review=6)
    assert report.examples == {"deleted": f"{path}:74", "failed_review": f"{path}:89"}
    for record in records:
        roles = [m["role"] for m in record.messages]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:]))
        assert record.lang == "en"
    assert len({r.source_id for r in records}) == 32


@pytest.mark.parametrize(
    ("root_line", "path_lines"),
    [
        # Tree e0cf4fa2: replies to the root have ranks 0 (line 2), 1 (line 6), 2 (line 7); line 3 is the only
        # reply to line 2; its replies have ranks 0 (line 4) and 1 (line 5). Line 4 has no reply.
        (1, [1, 2, 3, 4]),
        # Tree 08e31748: root replies rank 0 (85), 1 (90), 2 (97), failed review (98); 85 -> prompter 86 ->
        # replies rank 0 (87), 1 (88), failed review (89).
        (84, [84, 85, 86, 87]),
        # Tree f9318ddf: 249 (rank 0) -> 250 -> 251 (rank 0, no reply); the deleted prompter 253 is elsewhere.
        (248, [248, 249, 250, 251]),
        # Tree a6e6cfc6: the best reply (line 14 has rank 0) ends the path.
        (13, [13, 14]),
    ],
)
def test_hand_checked_paths(shared: Path, root_line: int, path_lines: list[int]) -> None:
    rows = sample_lines(shared)
    records, _ = load_source(SourceConfig(path=str(shared / SAMPLE), format="oasst_tree"))
    (record,) = [r for r in records if r.origin == f"{shared / SAMPLE}:{root_line}"]
    expected = [rows[n - 1] for n in path_lines]
    assert [m["content"] for m in record.messages] == [row["text"] for row in expected]
    assert [m["role"] for m in record.messages] == ["user", "assistant"] * (len(path_lines) // 2)
    assert record.source_id == rows[root_line - 1]["message_tree_id"]


def test_sample_in_another_language_has_no_records(shared: Path) -> None:
    with pytest.raises(
        DataError, match=r"no usable records in 293 rows \(left out: deleted=12 .*other_lang=275"
    ):
        load_source(SourceConfig(path=str(shared / SAMPLE), format="oasst_tree", lang="fi"))


# --- hand-made trees ------------------------------------------------------------------------------------


def msg(mid: str, parent: str | None, role: str, text: str, **extra) -> dict:
    row = {
        "message_id": mid,
        "parent_id": parent,
        "role": role,
        "text": text,
        "lang": "en",
        "rank": None,
        "deleted": False,
        "review_result": True,
        "message_tree_id": "T-" + (extra.pop("tree", None) or "x"),
    }
    row.update(extra)
    return row


def load(tmp_path: Path, rows: list, *, on_invalid: str = "error", **cfg) -> tuple[list, object]:
    path = tmp_path / "oasst.jsonl"
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return load_source(SourceConfig(path=str(path), format="oasst_tree", **cfg), on_invalid=on_invalid)


def contents(record) -> list[str]:
    return [m["content"] for m in record.messages]


def test_best_rank_null_rank_worst_and_message_id_tie_break(tmp_path: Path) -> None:
    rows = [
        msg("r", None, "prompter", "Q"),
        msg("a-null", "r", "assistant", "unranked", rank=None),
        msg("a1", "r", "assistant", "second", rank=1),
        msg("a0", "r", "assistant", "best", rank=0),
        msg("p-b", "a0", "prompter", "follow-up b", rank=0),
        msg("p-a", "a0", "prompter", "follow-up a", rank=0),  # same rank: the smaller message_id wins
        msg("x-z", "p-a", "assistant", "null ranks only: smaller id wins (x-a)"),
        msg("x-a", "p-a", "assistant", "answer"),
    ]
    (record,), report = load(tmp_path, rows)
    assert contents(record) == ["Q", "best", "follow-up a", "answer"]
    assert record.source_id == "T-x" and record.origin.endswith("oasst.jsonl:1")
    assert report.skipped == collections.Counter()


def test_path_ending_on_a_prompter_turn_loses_it(tmp_path: Path) -> None:
    rows = [
        msg("r", None, "prompter", "Q"),
        msg("a", "r", "assistant", "A"),
        msg("p", "a", "prompter", "thanks"),
    ]
    (record,), _ = load(tmp_path, rows)
    assert contents(record) == ["Q", "A"]


def test_drops_are_counted_by_reason(tmp_path: Path) -> None:
    rows = [
        msg("r", None, "prompter", "Q"),  # line 1
        msg("a0", "r", "assistant", "deleted best", rank=0, deleted=True),  # 2: deleted
        msg("p0", "a0", "prompter", "below deleted"),  # 3: descendant_of_dropped
        msg("a1", "r", "assistant", "failed review", rank=1, review_result=False),  # 4: failed_review
        msg("a2", "r", "assistant", "kept", rank=2, review_result=None),  # 5: unreviewed is kept
        msg("lonely", None, "prompter", "nobody answered", tree="2"),  # 6: tree_without_assistant_reply
        msg("o", "missing-parent", "assistant", "orphan", tree="3"),  # 7: orphan
        msg("oc", "o", "prompter", "below orphan", tree="3"),  # 8: descendant_of_dropped
        msg("r4", None, "prompter", "Q4", tree="4"),  # 9
        msg("a4", "r4", "assistant", "only a deleted reply", deleted=True, tree="4"),  # 10: deleted
    ]
    records, report = load(tmp_path, rows)
    assert [contents(r) for r in records] == [["Q", "kept"]]
    assert report.skipped == collections.Counter(
        deleted=2, failed_review=1, descendant_of_dropped=2, orphan=1, tree_without_assistant_reply=2
    )
    path = str(tmp_path / "oasst.jsonl")
    assert report.examples == {
        "deleted": f"{path}:2",
        "descendant_of_dropped": f"{path}:3",
        "failed_review": f"{path}:4",
        "tree_without_assistant_reply": f"{path}:6",
        "orphan": f"{path}:7",
    }


def test_lang_filter_per_message(tmp_path: Path) -> None:
    rows = [
        msg("r", None, "prompter", "Q"),
        msg("a0", "r", "assistant", "Antwort", rank=0, lang="de"),  # best, but not English
        msg("a1", "r", "assistant", "Answer", rank=1),
        msg("rf", None, "prompter", "Kysymys", lang="fi", tree="fi"),
        msg("af", "rf", "assistant", "Vastaus", lang="fi", tree="fi"),
    ]
    records, report = load(tmp_path, rows, lang="en")
    assert [contents(r) for r in records] == [["Q", "Answer"]]
    # Every non-English message is counted as other_lang itself (the reply "af" too, not as a descendant).
    assert report.skipped == collections.Counter(other_lang=3)
    records, _ = load(tmp_path, rows, lang="fi")
    assert [(contents(r), r.lang, r.source_id) for r in records] == [(["Kysymys", "Vastaus"], "fi", "T-fi")]
    records, _ = load(tmp_path, rows)  # no cfg.lang: the root's lang, one conversation per tree
    assert [(contents(r), r.lang) for r in records] == [
        (["Q", "Antwort"], "en"),
        (["Kysymys", "Vastaus"], "fi"),
    ]


def test_source_id_falls_back_to_root_message_id(tmp_path: Path) -> None:
    rows = [
        msg("root-id", None, "prompter", "Q", message_tree_id=None),
        msg("a", "root-id", "assistant", "A"),
    ]
    (record,), _ = load(tmp_path, rows)
    assert record.source_id == "root-id"


@pytest.mark.parametrize(
    ("bad", "reason", "words"),
    [
        (msg("a2", "r", "bot", "?"), "unknown_role", "unknown role 'bot' (expected prompter or assistant)"),
        (
            {k: v for k, v in msg("a2", "r", "assistant", "?").items() if k != "text"},
            "missing_field",
            "missing field 'text'",
        ),
        (msg("a2", "r", "assistant", " "), "empty_content", "empty text"),
        (msg("a2", "r", "assistant", "x", rank="0"), "wrong_type", "field 'rank' must be a number"),
        (msg("a", "r", "assistant", "dup"), "duplicate_message_id", "message_id 'a' appears twice"),
        ("{not json", "malformed_json", "malformed JSON"),
    ],
)
def test_invalid_rows(tmp_path: Path, bad, reason: str, words: str) -> None:
    rows = [msg("r", None, "prompter", "Q"), msg("a", "r", "assistant", "A", rank=0), bad]
    with pytest.raises(DataError) as info:
        load(tmp_path, rows)
    assert str(info.value).startswith(f"{tmp_path / 'oasst.jsonl'}:3: ") and words in str(info.value)
    records, report = load(tmp_path, rows, on_invalid="skip")
    assert [contents(r) for r in records] == [["Q", "A"]]
    assert report.skipped == collections.Counter({reason: 1})


def test_reply_with_the_wrong_role_invalidates_the_tree(tmp_path: Path) -> None:
    rows = [
        msg("r", None, "prompter", "Q"),
        msg("a", "r", "assistant", "A"),
        msg("b", "a", "assistant", "A again"),
    ]
    with pytest.raises(DataError, match=r"oasst\.jsonl:1: messages\[1\] and \[2\] are both assistant"):
        load(tmp_path, rows)
    rows.append(msg("r2", None, "prompter", "Q2", tree="2"))
    rows.append(msg("a2", "r2", "assistant", "A2", tree="2"))
    records, report = load(tmp_path, rows, on_invalid="skip")
    assert [contents(r) for r in records] == [["Q2", "A2"]]
    assert report.skipped == collections.Counter(consecutive_same_role=1)
