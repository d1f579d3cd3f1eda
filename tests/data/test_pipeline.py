"""data/pipeline.py: which source each example came from (what inspect_data groups by)."""

import json

from data.config import DataConfig, SourceConfig
from data.pipeline import build_dataset, examples_by_source


def _chats(path, ids, *, long_answer_for=()):
    with open(path, "w", encoding="utf-8") as f:
        for source_id in ids:
            answer = "pitkä " * 200 if source_id in long_answer_for else f"vastaus {source_id}"
            messages = [
                {"role": "user", "content": f"kysymys {source_id}"},
                {"role": "assistant", "content": answer},
            ]
            f.write(json.dumps({"source_id": source_id, "lang": "fi", "messages": messages}) + "\n")


def test_examples_are_grouped_by_the_source_they_came_from(tiny_tokenizer, tmp_path):
    """Two files whose rows share ids and language (a file and a copy loaded under another name, or a translation
    loaded twice): each example belongs to the source that holds its record, also when records before it were
    dropped in tokenization."""
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    _chats(first, ["a", "b", "c"], long_answer_for={"b"})
    _chats(second, ["a", "b", "c"])
    cfg = DataConfig(
        sources=[
            SourceConfig(path=str(first), format="messages"),
            SourceConfig(path=str(second), format="messages"),
        ],
        template="chatml",
        truncation="drop",
    )
    bundle = build_dataset(cfg, tokenizer=tiny_tokenizer, max_seq_len=64, use_cache=False)
    assert [bundle.dataset.source_id(i) for i in range(len(bundle.dataset))] == ["a", "c", "a", "b", "c"]  # first.jsonl's b is too long
    groups = examples_by_source(bundle)
    assert groups == {(str(first), "fi"): [0, 1], (str(second), "fi"): [2, 3, 4]}
