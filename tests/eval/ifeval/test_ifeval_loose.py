"""Loose mode: the eight readings of a response and how verdicts combine."""

from __future__ import annotations

from eval.ifeval.checkers import evaluate, loose_variants


def test_eight_variants_in_reference_order():
    response = "Sure!\n*Body* line\nThanks *all*"
    assert loose_variants(response) == [
        "Sure!\n*Body* line\nThanks *all*",  # as is
        "Sure!\nBody line\nThanks all",  # without "*"
        "*Body* line\nThanks *all*",  # without the first line
        "Sure!\n*Body* line",  # without the last line
        "*Body* line",  # without both
        "Body line\nThanks all",
        "Sure!\nBody line",
        "Body line",
    ]


def test_single_line_variants_are_blank_after_dropping_lines():
    variants = loose_variants("  one line  ")
    assert variants[0] == "  one line  "
    assert variants[2:5] == ["", "", ""]


def test_loose_passes_when_any_reading_passes_and_strict_only_on_the_response():
    only_middle = "Intro\nKEEP\nOutro"
    strict, loose = evaluate(only_middle, [lambda r: r == "KEEP", lambda r: "*" in r, lambda r: True])
    assert strict == [False, False, True]
    assert loose == [True, False, True]


def test_blank_readings_never_pass():
    # Only the blank readings (line drops of a one-line response) satisfy this check.
    strict, loose = evaluate("x", [lambda r: r == ""])
    assert (strict, loose) == ([False], [False])
    assert evaluate("   ", [lambda r: True]) == ([False], [False])


def test_star_removal_applies_to_every_line_drop(judge):
    # The JSON is fenced by decorative lines and contains no "*"; the title line has "**".
    response = '**Answer:**\n{"a": 1}\n**End**'
    assert judge("detectable_format:json_format", response) == (False, True)
    response = 'Title line\n"quoted *body*"\nlast'
    assert judge("startend:quotation", response) == (False, True)
