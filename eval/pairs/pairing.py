"""The pairing rule of launch/make_pairs.py: from a prompt's sampled answers, the preference pair it teaches.

Each answer has a language (langdetect; None when it cannot tell) and, when the prompt carries verifiable
instructions, the number of them it follows (strict verdicts). The rule, in order:

1. **Chosen** is a complete answer (not empty, and not cut at max_new_tokens unless `allow_truncated`) in the
   target language that follows the most instructions; ties go to the answer sampled first.
2. **Rejected** is an answer that is worse for the reason the pair should teach: first any answer in another
   language (or none that langdetect recognises), then a target-language answer following fewer instructions than
   the chosen one; among those, the one following the fewest instructions, then the one sampled first. An answer
   whose text equals the chosen one (ignoring surrounding whitespace) or is empty is never rejected.
3. No complete target-language answer: skipped as `no_target_language_answer`. Every other answer as good as the
   chosen one (same language, as many instructions): skipped as `no_worse_answer`.

Pure Python: no torch, no model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

NO_TARGET_LANGUAGE_ANSWER = "no_target_language_answer"
NO_WORSE_ANSWER = "no_worse_answer"


@dataclasses.dataclass(frozen=True)
class Answer:
    """One sampled answer, classified."""

    index: int  # order of sampling within its prompt
    text: str
    language: str | None
    truncated: bool
    followed: int = 0  # instructions followed (strict); 0 for prompts without instructions


@dataclasses.dataclass(frozen=True)
class Pair:
    chosen: Answer
    rejected: Answer


def choose_pair(answers: Sequence[Answer], *, target_lang: str, allow_truncated: bool = False) -> Pair | str:
    """The pair of `answers` by the rule above, or the reason why there is none."""
    candidates = [
        a
        for a in answers
        if a.language == target_lang and (allow_truncated or not a.truncated) and a.text.strip()
    ]
    if not candidates:
        return NO_TARGET_LANGUAGE_ANSWER
    chosen = min(candidates, key=lambda a: (-a.followed, a.index))

    def worse(answer: Answer) -> bool:
        if not answer.text.strip() or answer.text.strip() == chosen.text.strip():
            return False
        return answer.language != target_lang or answer.followed < chosen.followed

    rejectable = [a for a in answers if worse(a)]
    if not rejectable:
        return NO_WORSE_ANSWER
    rejected = min(rejectable, key=lambda a: (a.language == target_lang, a.followed, a.index))
    return Pair(chosen, rejected)
