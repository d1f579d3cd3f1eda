"""Aggregation, response matching, exclusion of other-language prompts, output files."""

from __future__ import annotations

import json

import pytest

from eval.ifeval import MissingResponsesError, load_prompts, prompt_from_row, score, write_outputs


def _prompt(key, text, ids, kwargs=None):
    return prompt_from_row(
        {"key": key, "prompt": text, "instruction_id_list": ids, "kwargs": kwargs or [{} for _ in ids]}
    )


@pytest.fixture
def two_prompts():
    return [
        _prompt(
            1, "Write a titled note without commas.", ["punctuation:no_comma", "detectable_format:title"]
        ),
        _prompt(2, "Write without commas.", ["punctuation:no_comma"]),
    ]


def test_accuracies_by_hand(two_prompts):
    scores = score(two_prompts, {1: "Hello, <<Note>>", 2: "All fine"})
    # prompt 1: no_comma fails, title passes; prompt 2: no_comma passes
    assert [v.follow_instruction_list_strict for v in scores.verdicts] == [[False, True], [True]]
    assert scores.prompt_level_strict_acc == 0.5
    assert scores.inst_level_strict_acc == pytest.approx(2 / 3)
    assert scores.prompt_level_loose_acc == 0.5
    assert scores.inst_level_loose_acc == pytest.approx(2 / 3)
    assert scores.per_category["punctuation"].strict_acc == 0.5
    assert scores.per_category["punctuation"].count == 2
    assert scores.per_category["detectable_format"].strict_acc == 1.0
    assert scores.per_instruction["punctuation:no_comma"].loose_acc == 0.5
    assert scores.counts == {
        "prompts_total": 2,
        "prompts_excluded_other_language": 0,
        "prompts_missing_response": 0,
        "prompts_scored": 2,
        "instructions_scored": 3,
    }


def test_loose_can_differ_from_strict(two_prompts):
    scores = score(two_prompts, {1: "Intro, then\n<<Note>> body\nBye, all", 2: "fine"})
    # dropping the first and last line removes both commas
    assert scores.verdicts[0].follow_instruction_list_strict == [False, True]
    assert scores.verdicts[0].follow_instruction_list_loose == [True, True]
    assert scores.prompt_level_strict_acc == 0.5
    assert scores.prompt_level_loose_acc == 1.0


def test_matching_by_key_or_prompt_text(two_prompts):
    by_text = {p.prompt: "ok" for p in two_prompts}
    assert score(two_prompts, by_text).counts["prompts_scored"] == 2
    by_str_key = {"1": "<<a>>", "2": "b"}
    assert score(two_prompts, by_str_key).prompt_level_strict_acc == 1.0
    unkeyed = [_prompt(None, "No key here.", ["punctuation:no_comma"])]
    assert score(unkeyed, {"No key here.": "x"}).verdicts[0].key is None


def test_missing_responses_list_count_and_keys(two_prompts):
    with pytest.raises(MissingResponsesError) as info:
        score(two_prompts, {1: "x"})
    assert info.value.keys == [2]
    assert "1 prompt(s) have no response: 2" in str(info.value)
    scores = score(two_prompts, {1: "x <<t>>"}, allow_missing=True)
    assert scores.counts["prompts_scored"] == 1
    assert scores.counts["prompts_missing_response"] == 1
    assert scores.missing_keys == [2]
    with pytest.raises(ValueError, match="no prompt has a response"):
        score(two_prompts, {}, allow_missing=True)


def test_exclude_other_languages_gives_the_papers_510(shared):
    prompts = load_prompts(shared / "ifeval" / "input_data.jsonl")
    responses = {p.key: "" for p in prompts}
    assert score(prompts, responses).counts["prompts_scored"] == 541
    english = score(prompts, responses, exclude_other_languages=True)
    assert english.counts["prompts_scored"] == 510
    assert english.counts["prompts_excluded_other_language"] == 31
    # An empty response fails everything.
    assert english.inst_level_strict_acc == 0.0 and english.inst_level_loose_acc == 0.0
    # A Finnish benchmark keeps the one prompt that asks for Finnish.
    finnish = score(prompts, responses, language="fi", exclude_other_languages=True)
    assert finnish.counts["prompts_excluded_other_language"] == 30


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"language": "EN"}, "lower-case ISO 639-1"),
        ({"compat": "lm-eval"}, "unknown compat"),
        ({"sentence_splitter": "spacy"}, "unknown sentence_splitter"),
    ],
)
def test_bad_options_are_value_errors(two_prompts, options, message):
    with pytest.raises(ValueError, match=message):
        score(two_prompts, {1: "a", 2: "b"}, **options)


def test_write_outputs(tmp_path, two_prompts):
    scores = score(two_prompts, {1: "Hello, <<Note>>", 2: "All fine"})
    verdicts_path, scores_path = write_outputs(scores, tmp_path / "out")
    rows = [json.loads(line) for line in verdicts_path.read_text().splitlines()]
    assert rows[0] == {
        "key": 1,
        "prompt": "Write a titled note without commas.",
        "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
        "follow_instruction_list_strict": [False, True],
        "follow_instruction_list_loose": [False, True],
    }
    data = json.loads(scores_path.read_text())
    assert data["prompt_level_strict_acc"] == 0.5
    assert data["inst_level_loose_acc"] == pytest.approx(2 / 3)
    assert data["per_category"]["punctuation"] == {"strict_acc": 0.5, "loose_acc": 0.5, "count": 2}
    assert data["counts"]["prompts_scored"] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores.json", "verdicts.jsonl"]


def test_import_pulls_in_neither_torch_nor_datasets():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, eval.ifeval, eval.ifeval.cli; print(sorted(m for m in ('torch', 'datasets', 'nltk') if m in sys.modules))"
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
    sources = (repo / "eval" / "ifeval").glob("*.py")
    assert not [p.name for p in sources if "import torch" in p.read_text() or "from torch" in p.read_text()]


def test_language_detection_is_seeded():
    from langdetect import DetectorFactory

    from eval.ifeval.langid import detect_language

    assert DetectorFactory.seed == 0
    # Short, ambiguous text is where an unseeded langdetect changes its mind between calls.
    texts = ["ok ja no", "hola ciao", "Sauna ist gut"]
    first = [detect_language.__wrapped__(t) for t in texts]
    for _ in range(5):
        assert [detect_language.__wrapped__(t) for t in texts] == first
