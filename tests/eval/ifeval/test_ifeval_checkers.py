"""One or more cases per instruction, with verdicts worked out by hand from the reference's rules."""

from __future__ import annotations

import pytest

from eval.ifeval import INSTRUCTION_IDS, prompt_from_row

T, F = True, False

# (instruction id, kwargs, response, expected strict, expected loose)
CASES = [
    # keywords:existence - case-insensitive regex *substring* search
    ("keywords:existence", {"keywords": ["cat"]}, "Concatenate the strings.", T, T),
    ("keywords:existence", {"keywords": ["cat", "dog"]}, "A CAT sat down.", F, F),
    ("keywords:existence", {"keywords": ["cat", "dog"]}, "A CAT met a Dog.", T, T),
    ("keywords:existence", {"keywords": ["c.t"]}, "I cut it.", T, T),  # the keyword is a regex
    ("keywords:existence", {"keywords": ["a (b"]}, "x a (b y", T, T),  # invalid regex: literal
    ("keywords:existence", {"keywords": ["a (b"]}, "x a b y", F, F),
    # keywords:frequency - substring occurrences, case-insensitive
    (
        "keywords:frequency",
        {"keyword": "peace", "frequency": 2, "relation": "at least"},
        "Peace, peaceful.",
        T,
        T,
    ),
    (
        "keywords:frequency",
        {"keyword": "peace", "frequency": 2, "relation": "at least"},
        "Peace and war.",
        F,
        F,
    ),
    (
        "keywords:frequency",
        {"keyword": "peace", "frequency": 2, "relation": "less than"},
        "peace PEACE",
        F,
        F,
    ),
    (
        "keywords:frequency",
        {"keyword": " peace ", "frequency": 1, "relation": "at least"},
        "peace",
        T,
        T,
    ),  # stripped
    # keywords:forbidden_words - whole words only
    ("keywords:forbidden_words", {"forbidden_words": ["rock"]}, "Rocket science.", T, T),
    ("keywords:forbidden_words", {"forbidden_words": ["rock"]}, "Let's ROCK.", F, F),
    ("keywords:forbidden_words", {"forbidden_words": ["rock"]}, "rock-solid", F, F),
    ("keywords:forbidden_words", {"forbidden_words": ["rock", "roll"]}, "rolls and rocks", T, T),
    # keywords:letter_frequency - case-insensitive count of one character
    (
        "keywords:letter_frequency",
        {"letter": "q", "let_frequency": 2, "let_relation": "at least"},
        "Quick quiz",
        T,
        T,
    ),
    (
        "keywords:letter_frequency",
        {"letter": "q", "let_frequency": 3, "let_relation": "less than"},
        "qQq",
        F,
        F,
    ),
    (
        "keywords:letter_frequency",
        {"letter": "Z", "let_frequency": 1, "let_relation": "at least"},
        "zoo",
        T,
        T,
    ),
    # deliberate difference: a non-letter target is counted literally (the reference picks a random letter)
    (
        "keywords:letter_frequency",
        {"letter": "#", "let_frequency": 2, "let_relation": "at least"},
        "## Title",
        T,
        T,
    ),
    (
        "keywords:letter_frequency",
        {"letter": "#", "let_frequency": 2, "let_relation": "at least"},
        "# Title",
        F,
        F,
    ),
    (
        "keywords:letter_frequency",
        {"letter": "!", "let_frequency": 2, "let_relation": "less than"},
        "Hi!",
        T,
        T,
    ),
    (
        "keywords:letter_frequency",
        {"letter": "!", "let_frequency": 2, "let_relation": "less than"},
        "Hi!!",
        F,
        F,
    ),
    # language:response_language - langdetect; undetectable text counts as followed
    (
        "language:response_language",
        {"language": "de"},
        "Das ist eine kurze Antwort auf Deutsch, die ziemlich klar ist.",
        T,
        T,
    ),
    (
        "language:response_language",
        {"language": "de"},
        "This is a short answer written in plain English.",
        F,
        F,
    ),
    ("language:response_language", {"language": "de"}, "12345 !!! 678", T, T),
    # length_constraints:number_sentences - Punkt-style sentence counting
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "less than"},
        "One. Two. Three.",
        F,
        F,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "less than"},
        "Dr. Smith came. He left.",
        T,
        T,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "at least"},
        "This is e.g. the best.",
        T,
        T,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "less than"},
        "It is 3.5 m long.",
        T,
        T,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 4, "relation": "at least"},
        "List:\n1. First.\n2. Second.",
        T,
        T,
    ),
    # length_constraints:number_paragraphs - "***" dividers
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", T, T),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nFirst.\n***\nSecond.\n***", T, T),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\n***\nSecond.", F, F),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n\nSecond.", F, F),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 1}, "One * * * two", T, T),
    # length_constraints:number_words - runs of \w
    ("length_constraints:number_words", {"num_words": 3, "relation": "at least"}, "one two-three", T, T),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "I don't", F, F),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "I do", T, T),
    # length_constraints:nth_paragraph_first_word - "\n\n" paragraphs
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Summary"},
        'Intro.\n\n"Summary, here."',
        T,
        T,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "summary"},
        "Intro.\n\nSummary: here.",  # ":" is not stripped from the word
        F,
        F,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "summary"},
        "Intro.\n\n\n\nSummary here.",  # the blank piece between is paragraph 2 of the raw split
        F,
        F,
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "intro"},
        "Intro here.\n\nMore.\n\nEven more.",
        F,
        T,  # dropping the last line leaves two paragraphs
    ),
    # detectable_content:number_placeholders - [..] on one line
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], see [address].", T, T),
    ("detectable_content:number_placeholders", {"num_placeholders": 1}, "Dear [na\nme].", F, F),
    ("detectable_content:number_placeholders", {"num_placeholders": 1}, "Empty [] counts.", T, T),
    # detectable_content:postscript - anywhere in the lower-cased response
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye.\np.s. see you", T, T),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye. P. S. see you", T, T),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye.\nPS see you", F, F),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye.\nP.S. see you", F, F),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye.\nP.P.S. see you", T, T),
    ("detectable_content:postscript", {"postscript_marker": "Note:"}, "Bye. NOTE: later", T, T),
    # detectable_format:number_bullet_lists - "* x" and "- x" lines
    ("detectable_format:number_bullet_lists", {"num_bullets": 3}, "* a\n* b\n- c", T, T),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "**Bold** intro\n* a\n* b", T, T),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b\n---", F, T),  # "---" counts
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "+ a\n1. b\n\u2022 c", F, F),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "  * a\n\t- b", T, T),
    # detectable_format:constrained_response - case-sensitive substring
    ("detectable_format:constrained_response", {}, "My answer is yes.", T, T),
    ("detectable_format:constrained_response", {}, "Well... My answer is maybe. Because.", T, T),
    ("detectable_format:constrained_response", {}, "my answer is yes.", F, F),
    ("detectable_format:constrained_response", {}, "My answer is yes", F, F),
    # detectable_format:number_highlighted_sections - *x* and **x**
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", T, T),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "** ** and * *", F, F),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "*multi\nline*", F, F),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 3}, "*a* *b* *c*", T, T),
    # detectable_format:multiple_sections - case-sensitive marker followed by a number
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 3},
        "SECTION 1\na\nSECTION 2\nb\nSECTION 3\nc",
        T,
        T,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "Section 1\na\nSection 2\nb",
        F,
        F,
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 1},
        "SECTION X\na",
        F,
        F,
    ),
    # detectable_format:json_format - optional ``` fences
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', T, T),
    ("detectable_format:json_format", {}, "```JSON\n[1, 2]\n```", T, T),
    ("detectable_format:json_format", {}, '```\n{"a": 1}\n```', T, T),
    ("detectable_format:json_format", {}, "{'a': 1}", F, F),
    ("detectable_format:json_format", {}, 'Here it is:\n{"a": 1}', F, T),
    ("detectable_format:json_format", {}, '```python\n{"a": 1}\n```', F, T),
    # detectable_format:title - <<...>> on one line, not blank
    ("detectable_format:title", {}, "<<My Title>>\nText", T, T),
    ("detectable_format:title", {}, "<< >>\nText", F, F),
    ("detectable_format:title", {}, "<<a\nb>>", F, F),
    ("detectable_format:title", {}, "<Title>", F, F),
    # combination:two_responses - exactly two different answers around "******"
    ("combination:two_responses", {}, "A\n******\nB", T, T),
    ("combination:two_responses", {}, "A ****** A", F, F),
    ("combination:two_responses", {}, "******A******B******", T, T),
    ("combination:two_responses", {}, "A******\n******B", F, F),
    ("combination:two_responses", {}, "A*******B", T, T),  # seven stars: "A" and "*B"
    # combination:repeat_prompt - case-insensitive prefix
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "write a poem. Roses...", T, T),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "  Write a poem.\nRoses", T, T),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure! Write a poem.", F, F),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Sure!\nWrite a poem. Roses", F, T),
    # startend:end_checker - case-insensitive suffix, outer double quotes ignored
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?", T, T),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, '"Done. any other questions?"', T, T),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Thanks", F, F),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions?\nThanks", F, T),
    # change_case:capital_word_frequency - Treebank tokens that are all upper case
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": "at least"},
        "I'M HAPPY",
        T,
        T,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "less than"},
        "NASA's rover",
        T,
        T,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "at least"},
        "Q&A",
        T,
        T,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 1, "capital_relation": "at least"},
        "COVID-19 news",
        T,
        T,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 1, "capital_relation": "at least"},
        "AI-based tools",
        F,
        F,
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "less than"},
        "I DON'T",
        F,
        F,
    ),
    # change_case:english_capital / english_lowercase - str.isupper/islower and English
    ("change_case:english_capital", {}, "THIS IS MY ANSWER AND IT IS IN ENGLISH.", T, T),
    ("change_case:english_capital", {}, "THIS IS MY ANSWER and it is in English.", F, F),
    ("change_case:english_capital", {}, "12345", F, F),  # no cased letter: isupper() is False
    ("change_case:english_capital", {}, "Sure:\nTHIS IS MY ANSWER AND IT IS IN ENGLISH.", F, T),
    ("change_case:english_lowercase", {}, "this is my answer and it is in english.", T, T),
    ("change_case:english_lowercase", {}, "this is my answer, says Bob.", F, F),
    (
        "change_case:english_lowercase",
        {},
        "dies ist meine antwort und sie ist auf deutsch geschrieben.",
        F,
        F,
    ),
    # punctuation:no_comma - ASCII comma only
    ("punctuation:no_comma", {}, "a, b", F, F),
    ("punctuation:no_comma", {}, "a b", T, T),
    ("punctuation:no_comma", {}, "\u0627\u060c \u0628", T, T),  # Arabic comma is not ","
    # startend:quotation - ASCII double quotes around the stripped response
    ("startend:quotation", {}, '"hello"', T, T),
    ("startend:quotation", {}, '  "hello"\n', T, T),
    ("startend:quotation", {}, '"', F, F),
    ("startend:quotation", {}, "\u201chello\u201d", F, F),
    ("startend:quotation", {}, '**"hello"**', F, T),
]


@pytest.mark.parametrize(("iid", "kwargs", "response", "strict", "loose"), CASES)
def test_instruction_verdicts(judge, iid, kwargs, response, strict, loose):
    assert judge(iid, response, **kwargs) == (strict, loose)


def test_cases_cover_every_instruction():
    assert set(INSTRUCTION_IDS) == {c[0] for c in CASES}
    assert len(INSTRUCTION_IDS) == 25


@pytest.mark.parametrize("iid", INSTRUCTION_IDS)
@pytest.mark.parametrize("response", ["", "   ", "\n\n \t"])
def test_empty_response_fails_everything(judge, iid, response):
    kwargs = {
        "keywords:existence": {"keywords": ["x"]},
        "keywords:frequency": {"keyword": "x", "frequency": 1, "relation": "less than"},
        "keywords:forbidden_words": {"forbidden_words": ["x"]},
        "keywords:letter_frequency": {"letter": "x", "let_frequency": 1, "let_relation": "less than"},
        "language:response_language": {"language": "en"},
        "length_constraints:number_sentences": {"num_sentences": 5, "relation": "less than"},
        "length_constraints:number_paragraphs": {"num_paragraphs": 0},
        "length_constraints:number_words": {"num_words": 5, "relation": "less than"},
        "length_constraints:nth_paragraph_first_word": {
            "num_paragraphs": 1,
            "nth_paragraph": 1,
            "first_word": "x",
        },
        "detectable_content:number_placeholders": {"num_placeholders": 0},
        "detectable_content:postscript": {"postscript_marker": "P.S."},
        "detectable_format:number_bullet_lists": {"num_bullets": 0},
        "detectable_format:number_highlighted_sections": {"num_highlights": 0},
        "detectable_format:multiple_sections": {"section_spliter": "SECTION", "num_sections": 0},
        "combination:repeat_prompt": {"prompt_to_repeat": "x"},
        "startend:end_checker": {"end_phrase": "x"},
        "change_case:capital_word_frequency": {"capital_frequency": 1, "capital_relation": "less than"},
    }.get(iid, {})
    # Many of these would pass on any non-blank text (no comma, no forbidden word, < 5 words...).
    assert judge(iid, response, **kwargs) == (False, False)


def test_at_most_is_stored_as_less_than_n_plus_one(judge):
    # "Answer with at most 3 words" is {"relation": "less than", "num_words": 4} in the data.
    kwargs = {"num_words": 4, "relation": "less than"}
    assert judge("length_constraints:number_words", "one two three", **kwargs) == (True, True)
    assert judge("length_constraints:number_words", "one two three four", **kwargs) == (False, False)


@pytest.mark.parametrize(
    ("iid", "kwargs", "message"),
    [
        ("keywords:unknown", {}, "unknown instruction id"),
        ("keywords:existence", {}, "missing kwarg 'keywords'"),
        ("keywords:existence", {"keywords": []}, "non-empty list"),
        ("keywords:frequency", {"keyword": "a", "frequency": 1, "relation": "at most"}, "must be one of"),
        (
            "length_constraints:number_words",
            {"num_words": -1, "relation": "at least"},
            "must not be negative",
        ),
        ("length_constraints:number_words", {"num_words": "3", "relation": "at least"}, "must be an integer"),
        (
            "keywords:letter_frequency",
            {"letter": "ab", "let_frequency": 1, "let_relation": "at least"},
            "single",
        ),
        ("punctuation:no_comma", {"extra": 1}, "unexpected kwargs"),
        (
            "length_constraints:nth_paragraph_first_word",
            {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"},
            "between 1 and num_paragraphs",
        ),
    ],
)
def test_bad_kwargs_are_value_errors(iid, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prompt_from_row({"key": 1, "prompt": "p", "instruction_id_list": [iid], "kwargs": [kwargs]})


def test_hub_padding_is_dropped_and_integral_floats_become_ints(judge):
    row = {
        "key": 7,
        "prompt": "p",
        "instruction_id_list": ["length_constraints:number_words"],
        "kwargs": [{"num_words": 3.0, "relation": "less than", "keywords": None, "language": None}],
    }
    prompt = prompt_from_row(row)
    assert prompt.kwargs == ({"num_words": 3, "relation": "less than"},)
