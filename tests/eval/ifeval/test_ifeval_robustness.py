"""The scorer never raises on a response string, whatever it contains."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eval.ifeval import INSTRUCTION_IDS, prompt_from_row, score

KWARGS = {
    "keywords:existence": {"keywords": ["c.t", "a (b"]},
    "keywords:frequency": {"keyword": "the", "frequency": 2, "relation": "at least"},
    "keywords:forbidden_words": {"forbidden_words": ["x+", "word"]},
    "keywords:letter_frequency": {"letter": "#", "let_frequency": 2, "let_relation": "less than"},
    "language:response_language": {"language": "fi"},
    "length_constraints:number_sentences": {"num_sentences": 3, "relation": "at least"},
    "length_constraints:number_paragraphs": {"num_paragraphs": 2},
    "length_constraints:number_words": {"num_words": 5, "relation": "less than"},
    "length_constraints:nth_paragraph_first_word": {
        "num_paragraphs": 2,
        "nth_paragraph": 2,
        "first_word": "x",
    },
    "detectable_content:number_placeholders": {"num_placeholders": 1},
    "detectable_content:postscript": {"postscript_marker": "P.S."},
    "detectable_format:number_bullet_lists": {"num_bullets": 2},
    "detectable_format:number_highlighted_sections": {"num_highlights": 1},
    "detectable_format:multiple_sections": {"section_spliter": "SECTION", "num_sections": 2},
    "combination:repeat_prompt": {"prompt_to_repeat": "Say it."},
    "startend:end_checker": {"end_phrase": "Bye."},
    "change_case:capital_word_frequency": {"capital_frequency": 2, "capital_relation": "at least"},
}
PROMPT = prompt_from_row(
    {
        "key": 1,
        "prompt": "every instruction",
        "instruction_id_list": list(INSTRUCTION_IDS),
        "kwargs": [KWARGS.get(i, {}) for i in INSTRUCTION_IDS],
    }
)
MARKUP = [
    "*",
    "**",
    "***",
    "******",
    "```",
    "```json",
    "#",
    "- ",
    "\n",
    "\n\n",
    " ",
    "<<",
    ">>",
    "[",
    "]",
    "{",
    "}",
    '"',
    "'",
    "\u201d",
    "P.S.",
    "p.p.s",
    "SECTION 1",
    "...",
    "?!",
    ".",
    ",",
    "I'M",
    "N'T",
    "Dr.",
    "1.",
    "e.g.",
    ":",
    "\u2014",
    "--",
    "(",
    ")",
    "\x00",
    "\ufeff",
    "\u200b",
    "\r",
]
SCRIPTS = st.sampled_from(
    list("abcXYZäöåÄÖ")
    + list("Жжяйक्षि日本語한국어العربيةשלום")
    + ["\U0001f600", "\u0301", "\u202e", "\U0010ffff"]
)
responses = st.one_of(
    st.text(),
    st.binary().map(lambda b: b.decode("latin-1")),
    st.lists(st.sampled_from(MARKUP) | SCRIPTS, max_size=60).map("".join),
    st.lists(st.sampled_from(MARKUP) | st.text(max_size=5), max_size=40).map("".join),
    st.text(alphabet=SCRIPTS, max_size=200),
)


def _score_all_modes(response: str) -> None:
    for language, compat in (("en", None), ("fi", None), ("fi", "lumiopen")):
        verdict = score([PROMPT], {1: response}, language=language, compat=compat).verdicts[0]
        assert len(verdict.follow_instruction_list_strict) == len(INSTRUCTION_IDS)
        for strict, loose in zip(
            verdict.follow_instruction_list_strict, verdict.follow_instruction_list_loose
        ):
            assert isinstance(strict, bool) and isinstance(loose, bool)
            assert loose or not strict  # the response itself is one of the loose readings


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses)
def test_any_response_gets_a_verdict(response):
    _score_all_modes(response)


@pytest.mark.parametrize(
    "response",
    [
        "[" * 100_000,  # nesting beyond json's recursion limit; quadratic for r"\[.*?\]"
        "<<" * 50_000,
        "\n" * 50_000 + "x",
        " \n" * 50_000 + "-",
        " " * 100_000 + "p.s",
        "{" + '"a": ' * 50_000,
        "word " * 200_000,  # about a megabyte
        "." * 100_000,
        "*" * 100_000,
        "\n" * 100_000,
        "Dr. " * 20_000 + "end",
        '"' * 10_001,
        "\ud800 lone surrogate",
    ],
)
def test_huge_and_pathological_responses(response):
    _score_all_modes(response)


def test_deep_json_is_not_json(judge):
    assert judge("detectable_format:json_format", "[" * 100_000 + "]" * 100_000) == (False, False)


# The linear scans that replace the reference's (quadratic) regexes must count exactly the same.
_SCAN_TEXT = st.lists(
    st.sampled_from(["*", "-", "[", "]", "<<", ">>", "<", ">", "\n", " ", "\t", "\u2003", "\x0b", "a", "b"]),
    max_size=40,
).map("".join)


@settings(max_examples=2000, deadline=None)
@given(_SCAN_TEXT)
def test_scans_match_the_reference_regexes(text):
    import re

    from eval.ifeval.checkers import _count_bullets, _count_placeholders, _has_title

    assert _count_bullets(text, "*") == len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE))
    assert _count_bullets(text, "-") == len(re.findall(r"^\s*-.*$", text, flags=re.MULTILINE))
    assert _count_placeholders(text) == len(re.findall(r"\[.*?\]", text))
    titles = re.findall(r"<<[^\n]+>>", text)
    assert _has_title(text) == any(t.lstrip("<").rstrip(">").strip() for t in titles)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(["p", ".", "s", " ", "\n", "P", "x", "S"]), max_size=30).map("".join))
def test_postscript_search_matches_the_reference_pattern(text):
    import re

    from eval.ifeval import prompt_from_row, score

    for marker, pattern in (("P.S.", r"\s*p\.\s?s\..*$"), ("P.P.S", r"\s*p\.\s?p\.\s?s.*$")):
        prompt = prompt_from_row(
            {
                "key": 1,
                "prompt": "p",
                "instruction_id_list": ["detectable_content:postscript"],
                "kwargs": [{"postscript_marker": marker}],
            }
        )
        got = score([prompt], {1: text}).verdicts[0].follow_instruction_list_strict[0]
        assert got == bool(text.strip() and re.findall(pattern, text.lower(), flags=re.MULTILINE))
