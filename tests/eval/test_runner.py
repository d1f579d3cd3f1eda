"""eval/runner.py: which prompts of a benchmark are evaluated, and the counts of those left out."""

import json

import pytest

from eval.config import BenchmarkConfig
from eval.runner import select_benchmark


def _write(path, languages):
    """One prompt per entry: a list of the response languages it asks for ([] = none)."""
    with open(path, "w", encoding="utf-8") as f:
        for key, langs in enumerate(languages, start=1):
            ids = ["punctuation:no_comma"] + ["language:response_language"] * len(langs)
            kwargs = [{}] + [{"language": lang} for lang in langs]
            row = {"key": key, "prompt": f"Prompt {key}", "instruction_id_list": ids, "kwargs": kwargs}
            f.write(json.dumps(row) + "\n")


@pytest.mark.parametrize(
    ("exclude", "limit", "kept", "other", "beyond"),
    [
        (True, None, [1, 2, 4, 5], 2, 0),
        (True, 3, [1, 2, 4], 2, 1),
        (False, None, [1, 2, 3, 4, 5, 6], 0, 0),
        (False, 10, [1, 2, 3, 4, 5, 6], 0, 0),
    ],
)
def test_selection_keeps_and_counts(tmp_path, exclude, limit, kept, other, beyond):
    path = tmp_path / "bench.jsonl"
    _write(path, [[], ["fi"], ["de"], ["fi", "fi"], [], ["fi", "de"]])
    bench = BenchmarkConfig(
        name="b", path=str(path), language="fi", exclude_other_languages=exclude, limit=limit
    )
    selection = select_benchmark(bench)
    assert [p.key for p in selection.prompts] == kept
    assert (selection.num_read, selection.num_other_language, selection.num_beyond_limit) == (
        6,
        other,
        beyond,
    )


def test_description_names_what_was_left_out(tmp_path):
    path = tmp_path / "bench.jsonl"
    _write(path, [[], ["de"], [], []])
    bench = BenchmarkConfig(name="b", path=str(path), language="fi", limit=2)
    assert select_benchmark(bench).describe() == (
        "2 of 4 prompts; 1 asking for another response language left out; 1 beyond limit left out"
    )
    bench = BenchmarkConfig(name="b", path=str(path), language="fi", exclude_other_languages=False)
    assert select_benchmark(bench).describe() == "4 of 4 prompts"


def test_nothing_left_is_an_error(tmp_path):
    path = tmp_path / "bench.jsonl"
    _write(path, [["de"]])
    with pytest.raises(ValueError, match="benchmark b: no prompts left"):
        select_benchmark(BenchmarkConfig(name="b", path=str(path), language="fi"))
