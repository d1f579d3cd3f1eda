"""What the judge model reads, and how its verdict is read back. No torch.

Single-answer grading shows the conversation up to the answer being graded (turn 2 with the model's own turn-1
answer before it), the reference answer of that turn when the question has one, and asks for a grade from 1 to 10
written as `[[N]]`. Pairwise comparison shows the same conversation twice, once with the model's answers and once
with the baseline's, and asks for `[[A]]`, `[[B]]` or `[[C]]` (a tie); every pair is judged in both orders. Both
prompts are templates (`judge.prompt_single`, `judge.prompt_pairwise`) with the placeholders {conversation} (or
{conversation_a} and {conversation_b}), {reference} and {language}. A verdict that does not match the pattern is
None: the caller counts it as a parse failure, never as a number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LANGUAGE_NAMES = {"en": "English", "fi": "Finnish", "sv": "Swedish", "et": "Estonian", "de": "German"}
MIN_GRADE, MAX_GRADE = 1.0, 10.0

DEFAULT_SINGLE = (
    "You are an impartial judge of an AI assistant's answers. Read the conversation below and grade the LAST "
    "answer of the assistant only: how helpful, correct, relevant, complete and clear it is for the user, who "
    "writes in {language} and expects an answer in {language}. Be strict about errors; length alone is no merit."
    "{reference}\n\nFirst explain your judgement in two or three sentences. Then write the grade, a whole number "
    "from 1 (useless or wrong) to 10 (excellent), exactly in this form: [[5]]\n\n{conversation}"
)
DEFAULT_PAIRWISE = (
    "You are an impartial judge of two AI assistants. They had the same conversation with a user who writes in "
    "{language}; compare ONLY their last answers: which is more helpful, correct, relevant, complete and clear? "
    "Ignore the order in which they are shown and the length of the answers.{reference}\n\nFirst explain your "
    "judgement in two or three sentences. Then write your verdict exactly in one of these forms: [[A]] if "
    "assistant A is better, [[B]] if assistant B is better, [[C]] for a tie.\n\n=== Assistant A ===\n"
    "{conversation_a}\n\n=== Assistant B ===\n{conversation_b}"
)
REFERENCE_BLOCK = (
    "\n\nA correct reference answer for the last question is:\n[Reference answer]\n{reference}\n[End]"
)
GRADE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def conversation(turns: Sequence[str], answers: Sequence[str]) -> str:
    """The dialogue up to the last answer, the one to judge, marked."""
    lines = []
    for i, (question, answer) in enumerate(zip(turns, answers)):
        last = i == len(answers) - 1
        lines += ["[User]", question, "[Assistant, the answer to judge]" if last else "[Assistant]", answer]
    return "\n".join(lines)


def _reference(reference: str | None) -> str:
    return REFERENCE_BLOCK.format(reference=reference) if reference else ""


def single_prompt(template: str, *, turns: Sequence[str], answers: Sequence[str], reference: str | None,
                  language: str) -> str:  # fmt: skip
    """The grading prompt of the last of `answers` (one per turn so far)."""
    return template.format(
        conversation=conversation(turns, answers),
        reference=_reference(reference),
        language=language_name(language),
    )


def pairwise_prompt(template: str, *, turns: Sequence[str], answers_a: Sequence[str], answers_b: Sequence[str],
                    reference: str | None, language: str) -> str:  # fmt: skip
    return template.format(
        conversation_a=conversation(turns, answers_a),
        conversation_b=conversation(turns, answers_b),
        reference=_reference(reference),
        language=language_name(language),
    )


def parse_grade(text: str) -> float | None:
    """The last `[[N]]` of the judge's text when N is a grade from 1 to 10, else None."""
    found = GRADE.findall(text)
    if not found:
        return None
    grade = float(found[-1])
    return grade if MIN_GRADE <= grade <= MAX_GRADE else None


def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'C' (tie) from the last `[[X]]` of the judge's text, else None."""
    found = VERDICT.findall(text)
    return found[-1] if found else None


def check_templates(single: str, pairwise: str) -> list[str]:
    """Problems with user-written templates (a missing or unknown placeholder), as lines; empty when fine."""
    problems = []
    for name, template, needed in (("judge.prompt_single", single, ("conversation",)),
                                   ("judge.prompt_pairwise", pairwise, ("conversation_a", "conversation_b"))):  # fmt: skip
        fields = {m.group(1) for m in re.finditer(r"(?<!\{)\{(\w*)\}(?!\})", template)}
        allowed = {*needed, "reference", "language"}
        problems += [f"{name} has no {{{field}}}" for field in needed if field not in fields]
        problems += [f"{name}: unknown placeholder {{{field}}} (allowed: {', '.join(sorted(allowed))})"
                     for field in sorted(fields - allowed)]  # fmt: skip
    return problems
