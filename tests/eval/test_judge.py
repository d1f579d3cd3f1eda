"""Judge benchmarks (eval/judge/): questions, prompts and verdict parsing, penalties, pairwise order, intervals;
and launch/eval.py with `kind: judge` on tiny random models (recipes/test/tiny_judge.yaml): ranks, resume,
penalties without the judge, parse failures, the pairwise comparison, the records."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
from harness import REPO, read_jsonl, run_job

from data.errors import ConfigError, DataError
from eval.judge.prompts import (
    DEFAULT_PAIRWISE,
    DEFAULT_SINGLE,
    check_templates,
    parse_grade,
    parse_verdict,
    single_prompt,
)
from eval.judge.questions import load_questions
from eval.judge.scoring import (
    bootstrap_interval,
    grade_scores,
    in_language,
    pairwise_judgement,
    pairwise_scores,
    single_judgement,
)

RECIPE = "recipes/test/tiny_judge.yaml"
FI = "Aurinko paistaa ja lapset leikkivät pihalla koko päivän, koska koulu on kiinni."
EN = "The sun is shining and the children play outside all day because the school is closed."


# --- questions -------------------------------------------------------------------------------------------------


def test_the_demo_questions_load():
    for name in ("demo_en", "demo_fi"):
        questions = load_questions(str(REPO / f"eval/judge/data/{name}.jsonl"))
        assert len(questions) == 8 and len({q.category for q in questions}) == 8
        assert all(len(q.turns) == 2 for q in questions)
        assert sum(bool(q.reference) for q in questions) == 4


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"category": "math", "turns": ["x"]}, "missing field 'question_id'"),
        ({"question_id": 1, "category": "math", "turns": []}, "field 'turns' must hold at least one turn"),
        ({"question_id": 1, "category": "math", "turns": ["a"], "reference": ["r", "s"]}, "2 answers for 1 turns"),
        ({"question_id": True, "category": "math", "turns": ["a"]}, "field 'question_id' must be"),
    ],
)
def test_bad_questions_are_one_line_with_file_and_line(tmp_path, row, problem):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question_id": 0, "category": "c", "turns": ["ok"]}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=rf"^{path}:2: .*{problem}"):
        load_questions(str(path))


def test_duplicate_ids_are_refused(tmp_path):
    path = tmp_path / "q.jsonl"
    row = json.dumps({"question_id": 7, "category": "c", "turns": ["a"]})
    path.write_text(row + "\n" + row + "\n")
    with pytest.raises(DataError, match=rf"{path}:2: duplicate question_id '7' \(first at {path}:1\)"):
        load_questions(str(path))


# --- prompts and parsing ---------------------------------------------------------------------------------------


def test_grades_and_verdicts_are_read_from_the_last_bracket_or_not_at_all():
    assert parse_grade("Fine. Grade: [[7]]") == 7.0
    assert parse_grade("first [[2]], on second thought [[ 8 ]]") == 8.0
    assert parse_grade("[[11]]") is None and parse_grade("[[0]]") is None and parse_grade("seven") is None
    assert parse_verdict("A is better: [[A]]") == "A" and parse_verdict("[[C]]") == "C"
    assert parse_verdict("[[D]]") is None and parse_verdict("A") is None


def test_the_second_turn_is_judged_with_the_first_answer_and_the_reference():
    prompt = single_prompt(DEFAULT_SINGLE, turns=["Q1", "Q2"], answers=["A1", "A2"], reference="R2", language="fi")
    assert prompt.index("[User]\nQ1\n[Assistant]\nA1\n[User]\nQ2\n[Assistant, the answer to judge]\nA2") > 0
    assert "[Reference answer]\nR2" in prompt and "writes in Finnish" in prompt
    assert "[Reference answer]" not in single_prompt(DEFAULT_SINGLE, turns=["Q1"], answers=["A1"], reference=None,
                                                     language="en")  # fmt: skip


def test_user_templates_are_checked():
    assert check_templates(DEFAULT_SINGLE, DEFAULT_PAIRWISE) == []
    problems = check_templates("Grade {answer}", "{conversation_a} only")
    assert "judge.prompt_single has no {conversation}" in problems
    assert "judge.prompt_single: unknown placeholder {answer} (allowed: conversation, language, reference)" in problems
    assert "judge.prompt_pairwise has no {conversation_b}" in problems


def test_a_bad_template_in_the_config_is_one_line():
    from eval.config import EvalConfig
    from runtime.config import load_config

    with pytest.raises(ConfigError, match="judge.prompt_single has no {conversation}"):
        load_config(EvalConfig, str(REPO / RECIPE), ["judge.prompt_single=Grade it"])


# --- scoring -----------------------------------------------------------------------------------------------------


def test_language_is_read_from_the_prose_not_the_code_or_the_quotes():
    assert in_language(FI, "fi") and not in_language(EN, "fi") and in_language(EN, "en")
    assert in_language(f'{FI}\n```python\nprint("hello world, how are you")\n```', "fi")
    assert in_language(f'{FI} Hän sanoi: "I will be there tomorrow morning".', "fi")
    assert not in_language("```python\nx = 1\n```", "fi") and not in_language("", "en")


def test_an_answer_in_the_wrong_language_gets_the_minimum_without_the_judge():
    judged = single_judgement("q:1", answer=EN, language="fi", judge_text=None)
    assert judged == {"key": "q:1", "grade": 1.0, "penalty": "wrong_language", "raw": None, "parse_failure": False}
    assert single_judgement("q:1", answer=FI, language="fi", judge_text="[[9]]")["grade"] == 9.0
    failed = single_judgement("q:1", answer=FI, language="fi", judge_text="a very good answer")
    assert failed["grade"] is None and failed["parse_failure"] and failed["raw"] == "a very good answer"


def test_a_judge_that_always_prefers_the_first_answer_gives_only_ties():
    outcomes = {
        pairwise_judgement("q:1", answer=FI, baseline=FI + " Kiitos.", language="fi", model_first=a, baseline_first=b)[
            "outcome"
        ]
        for a, b in (("[[A]]", "[[A]]"), ("[[B]]", "[[B]]"), ("[[C]]", "[[A]]"))
    }
    assert outcomes == {"tie"}
    win = pairwise_judgement("k", answer=FI, baseline=FI, language="fi", model_first="[[A]]", baseline_first="[[B]]")
    loss = pairwise_judgement("k", answer=FI, baseline=FI, language="fi", model_first="[[B]]", baseline_first="[[A]]")
    assert (win["outcome"], loss["outcome"]) == ("win", "loss")
    broken = pairwise_judgement("k", answer=FI, baseline=FI, language="fi", model_first="[[A]]", baseline_first="?")
    assert broken["outcome"] is None and broken["parse_failure"]
    assert pairwise_judgement("k", answer=EN, baseline=FI, language="fi", model_first=None, baseline_first=None)[
        "outcome"
    ] == "loss"  # decided by the language, the judge never asked
    assert pairwise_judgement("k", answer=EN, baseline=EN, language="fi", model_first=None, baseline_first=None)[
        "outcome"
    ] == "tie"


def test_scores_by_hand():
    rows = [
        {"key": "a:1", "question_id": "a", "turn": 1, "category": "math", "grade": 8.0, "penalty": None,
         "parse_failure": False},
        {"key": "a:2", "question_id": "a", "turn": 2, "category": "math", "grade": 1.0, "penalty": "wrong_language",
         "parse_failure": False},
        {"key": "b:1", "question_id": "b", "turn": 1, "category": "coding", "grade": 6.0, "penalty": None,
         "parse_failure": False},
        {"key": "b:2", "question_id": "b", "turn": 2, "category": "coding", "grade": None, "penalty": None,
         "parse_failure": True},
    ]  # fmt: skip
    scores = grade_scores(rows, samples=200)
    assert scores["mean"] == pytest.approx(5.0) and scores["num"] == 3  # (8 + 1 + 6) / 3: the failure left out
    assert scores["per_turn"]["1"]["mean"] == 7.0 and scores["per_turn"]["2"]["mean"] == 1.0
    assert scores["per_category"]["math"]["mean"] == 4.5 and scores["per_category"]["coding"]["mean"] == 6.0
    assert scores["parse_failures"] == 1 and scores["parse_failure_keys"] == ["b:2"]
    assert scores["penalties"] == 1 and scores["penalty_keys"] == ["a:2"]
    low, high = scores["ci95"]  # per-question means 4.5 and 6.0
    assert 4.5 <= low <= high <= 6.0
    pairs = [dict(r, outcome=o) for r, o in zip(rows, ("win", "tie", "loss", None))]
    pw = pairwise_scores(pairs, samples=200)
    assert (pw["win"], pw["tie"], pw["loss"], pw["parse_failures"]) == (1, 1, 1, 1)
    assert pw["win_rate"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3


def test_the_bootstrap_is_seeded_and_brackets_the_mean():
    values = [1.0, 2.0, 6.0, 7.0, 9.0]
    assert bootstrap_interval(values, samples=500) == bootstrap_interval(values, samples=500)
    low, high = bootstrap_interval(values, samples=500)
    assert low < sum(values) / len(values) < high and bootstrap_interval([], samples=5) is None


# --- the job on tiny models -------------------------------------------------------------------------------------

OUTPUTS = ("answers.jsonl", "answers.turn1.jsonl", "answers.turn2.jsonl", "judge_single.jsonl", "judgements.jsonl")


def _eval(out, *overrides, nproc=1, check=True, env=None):
    return run_job("launch/eval.py", RECIPE, f"output_dir={out}", *overrides, nproc=nproc, check=check, env=env)


def _files(out, bench="judge_fi"):
    return {name: (out / bench / name).read_bytes() for name in OUTPUTS if (out / bench / name).exists()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("judge") / "one"
    proc = _eval(out)
    return out, proc


def test_answers_judgements_and_scores(reference):
    out, proc = reference
    fi = json.loads((out / "judge_fi" / "scores.json").read_text())
    answers = read_jsonl(out / "judge_fi" / "answers.jsonl")
    assert [len(row["answers"]) for row in answers] == [2, 2, 2, 2] and fi["kind"] == "judge"
    turn2 = {row["key"]: row for row in read_jsonl(out / "judge_fi" / "answers.turn2.jsonl")}
    assert set(turn2) == {row["question_id"] for row in answers}
    judged = read_jsonl(out / "judge_fi" / "judgements.jsonl")
    assert len(judged) == 8 and fi["num_answers"] == 8
    # every answer either penalised (no judge text) or judged; a random judge writes no [[N]]: counted, no number
    asked = {row["key"] for row in read_jsonl(out / "judge_fi" / "judge_single.jsonl")}
    for row in judged:
        if row["penalty"]:
            assert row["key"] not in asked and row["grade"] == 1.0 and row["raw"] is None
        else:
            assert row["key"] in asked and row["parse_failure"] and row["grade"] is None
    assert fi["grades"]["parse_failures"] == sum(r["parse_failure"] for r in judged) > 0
    assert fi["grades"]["penalties"] == sum(r["penalty"] is not None for r in judged)
    assert "judge_fi: 8 answers to 4 questions" in proc.stdout


def test_wrong_language_answers_are_never_shown_to_the_judge(reference):
    out, _ = reference
    en = json.loads((out / "judge_en" / "scores.json").read_text())
    judged = read_jsonl(out / "judge_en" / "judgements.jsonl")
    wrong = [row for row in judged if row["penalty"] == "wrong_language"]
    assert wrong and en["grades"]["penalties"] == len(wrong)
    asked = out / "judge_en" / "judge_single.jsonl"
    asked_keys = {row["key"] for row in read_jsonl(asked)} if asked.exists() else set()
    assert not asked_keys & {row["key"] for row in wrong}
    for row in read_jsonl(out / "judge_en" / "answers.jsonl"):
        for turn, answer in enumerate(row["answers"], start=1):
            penalised = any(r["key"] == f"{row['question_id']}:{turn}" for r in wrong)
            assert penalised == (not in_language(answer, "en"))


def test_two_ranks_write_the_same_answers_and_judgements(reference, tmp_path):
    out, _ = reference
    two = tmp_path / "two"
    _eval(two, nproc=2)
    for bench in ("judge_fi", "judge_en"):
        assert _files(two, bench) == _files(out, bench), bench


def test_a_killed_run_continues_without_redoing_finished_work(reference, tmp_path):
    out, _ = reference
    killed = tmp_path / "killed"
    proc = _eval(killed, check=False, env={"SISU_DEBUG_KILL_AFTER_ROUNDS": "1"})
    assert proc.returncode == -signal.SIGKILL
    done = (killed / "judge_fi" / "answers.turn1.jsonl").read_text().splitlines()
    assert 0 < len(done) < 4  # the first round of turn 1 was written, then the kill
    again = _eval(killed)
    assert f"judge_fi turn 1: {len(done)} of 4 prompts already in" in again.stdout + again.stderr
    for bench in ("judge_fi", "judge_en"):
        assert _files(killed, bench) == _files(out, bench), bench


def test_pairwise_against_a_baseline_and_the_records(reference, tmp_path):
    out, _ = reference
    other = tmp_path / "other"
    baseline = out / "judge_fi" / "answers.jsonl"
    pairwise = [f"benchmarks.0.baseline={baseline}", "seed=4"]  # another seed: other random weights and answers
    proc = _eval(other, *pairwise)
    fi = json.loads((other / "judge_fi" / "scores.json").read_text())
    rows = [r for r in read_jsonl(other / "judge_fi" / "judgements.jsonl") if r["kind"] == "pairwise"]
    assert len(rows) == 8 and fi["pairwise"]["num_judgements"] == 8 and "vs baseline" in proc.stdout
    for row in rows:
        assert row["penalty"] == "wrong_language" or set(row["raw"]) == {"model_first", "baseline_first", "verdicts"}
    asked = {r["key"] for r in read_jsonl(other / "judge_fi" / "judge_pairwise.jsonl")} if any(
        r["penalty"] is None for r in rows
    ) else set()
    assert all(key.endswith((":model_first", ":baseline_first")) for key in asked)
    # another judge decoding is refused like IFEval's other decoding, in one line; so is another model
    refused = _eval(other, *pairwise, "judge.generation.max_new_tokens=9", check=False)
    error = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2 and "holds judgements made with different decoding (max_new_tokens)" in error
    assert "judge.json" not in error and "delete" in error and "judge_single.jsonl" in error
    refused = _eval(other, *pairwise[:1], "seed=5", check=False)
    assert refused.returncode == 2 and "holds answers made with a different model" in refused.stderr
    # a baseline that lacks a question is one line
    short = tmp_path / "short.jsonl"
    short.write_text(baseline.read_text().splitlines()[0] + "\n")
    refused = _eval(tmp_path / "third", f"benchmarks.0.baseline={short}", check=False)
    assert refused.returncode == 2 and "no answer to every turn of question" in refused.stderr
    shutil.rmtree(other)
