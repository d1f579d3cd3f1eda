"""The hand-written Finnish test set (eval/ifeval/data) and the language-aware behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import eval.ifeval as ifeval
from eval.ifeval import INSTRUCTION_IDS, load_prompts, load_responses, score

DATA = Path(ifeval.__file__).parent / "data"


@pytest.fixture(scope="module")
def finnish():
    prompts = load_prompts(DATA / "fi_test_prompts.jsonl")
    rows = [
        json.loads(line)
        for line in (DATA / "fi_test_responses.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    return prompts, {row["key"]: row for row in rows}


def test_set_covers_every_instruction_with_the_extra_language_row(finnish):
    prompts, rows = finnish
    assert len(prompts) >= 40
    assert {i for p in prompts for i in p.instruction_id_list} == set(INSTRUCTION_IDS)
    for p in prompts:
        # As in LumiOpen/ifeval_mt, every row ends with a Finnish response-language instruction.
        assert p.instruction_id_list[-1] == "language:response_language"
        assert p.kwargs[-1] == {"language": "fi"}
    assert set(rows) == {p.key for p in prompts}


@pytest.mark.parametrize(("compat", "suffix"), [(None, ""), ("lumiopen", "lumiopen_")])
def test_expected_verdicts(finnish, compat, suffix):
    prompts, rows = finnish
    scores = score(prompts, {k: r["response"] for k, r in rows.items()}, language="fi", compat=compat)
    for verdict in scores.verdicts:
        row = rows[verdict.key]
        assert verdict.follow_instruction_list_strict == row[f"expected_{suffix}strict"], (
            verdict.key,
            row.get("note"),
        )
        assert verdict.follow_instruction_list_loose == row[f"expected_{suffix}loose"], (
            verdict.key,
            row.get("note"),
        )


def test_language_aware_and_lumiopen_disagree_where_documented(finnish):
    _, rows = finnish
    differing = {
        k
        for k, r in rows.items()
        if r["expected_strict"] != r["expected_lumiopen_strict"]
        or r["expected_loose"] != r["expected_lumiopen_loose"]
    }
    # sentence rules, English answer options (LumiOpen's ifeval_fi accepts only the Finnish ones),
    # upper/lower-case Finnish, Finnish quotes, loose lower-case
    assert differing == {9012, 9025, 9038, 9039, 9040, 9043, 9045}


def test_lumiopen_mode_accepts_only_the_finnish_constrained_answers():
    """LumiOpen's ifeval_fi harness (December 2024) replaced the answer options by Finnish ones."""
    from eval.ifeval.loading import Prompt

    def verdict(response, *, language, compat):
        prompt = Prompt(
            key=1,
            prompt="Onko?",
            instruction_id_list=("detectable_format:constrained_response",),
            kwargs=({},),
        )
        return (
            score([prompt], {1: response}, language=language, compat=compat)
            .verdicts[0]
            .follow_instruction_list_strict[0]
        )

    assert verdict("Vastaukseni on kyllä.", language="fi", compat="lumiopen") is True
    assert verdict("My answer is yes.", language="fi", compat="lumiopen") is False
    assert verdict("My answer is yes.", language="fi", compat=None) is True  # language-aware: both
    assert verdict("Vastaukseni on kyllä.", language="fi", compat=None) is True
    assert verdict("My answer is yes.", language="en", compat=None) is True
    assert verdict("Vastaukseni on kyllä.", language="en", compat=None) is False


def test_responses_file_loads_with_the_cli_reader(finnish):
    prompts, _ = finnish
    responses = load_responses(DATA / "fi_test_responses.jsonl")
    assert score(prompts, responses, language="fi").counts["prompts_scored"] == len(prompts)


def test_exclude_other_languages_drops_the_german_prompt(finnish):
    prompts, rows = finnish
    scores = score(
        prompts, {k: r["response"] for k, r in rows.items()}, language="fi", exclude_other_languages=True
    )
    assert scores.counts["prompts_excluded_other_language"] == 1
    assert 9010 not in {v.key for v in scores.verdicts}


UPPER_FINNISH = "SUOMI ON KAUNIS MAA, JOSSA ON TUHANSIA JÄRVIÄ JA LAAJOJA METSIÄ."


def test_upper_case_finnish_needs_case_folding_for_detection(judge):
    # English benchmark and lumiopen demand English; a Finnish benchmark demands Finnish.
    assert judge("change_case:english_capital", UPPER_FINNISH) == (False, False)
    assert judge("change_case:english_capital", UPPER_FINNISH, benchmark="fi", compat="lumiopen") == (
        False,
        False,
    )
    assert judge("change_case:english_capital", UPPER_FINNISH, benchmark="fi") == (True, True)
    assert judge("language:response_language", UPPER_FINNISH, benchmark="fi", language="fi") == (True, True)


def test_finnish_defaults_only_replace_built_in_english_ones(judge):
    assert judge("detectable_format:constrained_response", "Vastaukseni on ehkä.", benchmark="fi") == (
        True,
        True,
    )
    assert judge("detectable_format:constrained_response", "My answer is maybe.", benchmark="fi") == (
        True,
        True,
    )
    assert judge("detectable_format:constrained_response", "Vastaukseni on ehkä.") == (False, False)
    assert judge("startend:quotation", "»Sisu»", benchmark="fi") == (True, True)
    # kwargs are never replaced: a translated end phrase is checked as given
    assert judge(
        "startend:end_checker", "Kiitos. Any other questions?", benchmark="fi", end_phrase="Onko kysyttävää?"
    ) == (
        False,
        False,
    )


def test_other_languages_get_language_aware_case_checks(judge):
    german = "das ist meine antwort und sie ist vollständig auf deutsch geschrieben."
    assert judge("change_case:english_lowercase", german, benchmark="de") == (True, True)
    assert judge("change_case:english_lowercase", german) == (False, False)
