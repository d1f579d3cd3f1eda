"""Open-ended questions in the MT-Bench schema, from a local JSON lines file or a hub dataset. No torch.

A row: `question_id` (integer or string, unique), `category` (string), `turns` (a list of one or more
non-empty strings: the user's turns; the model answers each, seeing its own earlier answers), optional
`reference` (a list of reference answers, one per turn, or fewer: the judge gets the reference of a turn when
there is one). Every problem is one line naming the file and line (or hub record).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from data.errors import DataError, Unreachable, hub_offline


@dataclasses.dataclass(frozen=True)
class Question:
    question_id: str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] = ()

    def reference_for(self, turn: int) -> str | None:
        """The reference answer of `turn` (1-based), if the question has one."""
        return self.reference[turn - 1] if turn <= len(self.reference) else None


def question_from_row(row: Any, *, origin: str) -> Question:
    """A validated Question; DataError naming `origin` otherwise."""

    def fail(problem: str) -> DataError:
        return DataError(f"{origin}: {problem}")

    if not isinstance(row, dict):
        raise fail(f"expected a JSON object, got {type(row).__name__}")
    for name in ("question_id", "category", "turns"):
        if row.get(name) is None:
            raise fail(f"missing field {name!r}")
    qid = row["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or str(qid).strip() == "":
        raise fail(f"field 'question_id' must be an integer or a non-empty string, got {qid!r}")
    category = row["category"]
    if not isinstance(category, str) or not category.strip():
        raise fail("field 'category' must be a non-empty string")
    turns, reference = row["turns"], row.get("reference") or []
    for name, value, empty_ok in (("turns", turns, False), ("reference", reference, True)):
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise fail(f"field {name!r} must be a list of strings")
        if not empty_ok and (not value or not all(t.strip() for t in value)):
            raise fail(f"field {name!r} must hold at least one turn, none of them empty")
    if len(reference) > len(turns):
        raise fail(f"'reference' has {len(reference)} answers for {len(turns)} turns")
    return Question(str(qid), category.strip(), tuple(turns), tuple(reference))


def load_questions(path: str, *, name: str | None = None, split: str = "train") -> list[Question]:
    """The questions of a local .jsonl file or a hub dataset, in order; ids must be unique."""
    local = Path(path)
    if local.is_file():
        rows = []
        for number, line in enumerate(local.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((json.loads(line), f"{path}:{number}"))
            except ValueError as exc:
                raise DataError(f"{path}:{number}: malformed JSON ({exc})") from None
    elif local.suffix or path.startswith((".", "/", "~")):
        raise DataError(f"{path}: file not found")
    else:
        rows = [(row, f"{path}: record {i}") for i, row in enumerate(_hub_rows(path, name=name, split=split))]
    questions, seen = [], {}
    for row, origin in rows:
        question = question_from_row(row, origin=origin)
        if question.question_id in seen:
            raise DataError(
                f"{origin}: duplicate question_id {question.question_id!r} (first at {seen[question.question_id]})"
            )
        seen[question.question_id] = origin
        questions.append(question)
    if not questions:
        raise DataError(f"{path}: no questions")
    return questions


def _hub_rows(path: str, *, name: str | None, split: str) -> list[dict]:
    import datasets  # lazy: only hub benchmarks need it

    try:
        return list(datasets.load_dataset(path, name, split=split))
    except Exception as exc:  # noqa: BLE001 - any failure here is "could not load this benchmark"
        error = Unreachable if hub_offline() else DataError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{path}: could not load questions (name={name}, split={split}): {first}") from exc
