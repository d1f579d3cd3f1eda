"""From answers and the judge's texts to judgements and scores. Pure Python (langdetect only), no torch.

- **Language penalty**, before the judge is asked: an answer that langdetect does not find in the benchmark's
  language (text in code blocks, inline code and quotes set aside: they stay in their own language) gets the
  minimum grade, 1, and in a pairwise comparison loses (both answers in the wrong language: a tie).
- **Single grades**: a judgement whose text holds no `[[N]]` with 1 <= N <= 10 is a parse failure: counted,
  listed, and left out of the means (never a number).
- **Pairwise**: each pair is judged with the model's answer as A and as B; the model wins only when both orders
  prefer it, loses only when both prefer the baseline, and ties otherwise (a judge that always prefers the first
  answer yields only ties). A pair with an unparseable verdict in either order is a parse failure. The win rate
  counts ties as half.
- **Intervals**: 95% bootstrap intervals over questions (`samples` resamples of the questions with replacement,
  seeded, a question's score the mean over its judged turns).
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Iterable, Sequence

from data.translate.segment import strip_code
from eval.ifeval.langid import detect_language
from eval.judge.prompts import MIN_GRADE, parse_grade, parse_verdict

QUOTED = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”|«[^»\n]*»|„[^“”\n]*[“”]")


def in_language(text: str, language: str) -> bool:
    """Whether langdetect finds `text` in `language` (primary subtag), code and quoted passages set aside. Text
    with nothing to classify (empty, digits, code only) is in no language."""
    prose = QUOTED.sub(" ", strip_code(text)).strip()
    if not prose:
        return False
    detected = detect_language(prose)
    return detected is not None and detected.split("-")[0].lower() == language.split("-")[0].lower()


def single_judgement(key: str, *, answer: str, language: str, judge_text: str | None) -> dict:
    """The judgement of one answer: penalised (no judge text needed), graded, or a parse failure."""
    if not in_language(answer, language):
        return {
            "key": key,
            "grade": MIN_GRADE,
            "penalty": "wrong_language",
            "raw": None,
            "parse_failure": False,
        }
    grade = parse_grade(judge_text or "")
    return {"key": key, "grade": grade, "penalty": None, "raw": judge_text, "parse_failure": grade is None}


def pairwise_penalty(answer: str, baseline: str, language: str) -> str | None:
    """'loss', 'win' or 'tie' decided by the language alone, or None (the judge decides)."""
    ours, theirs = in_language(answer, language), in_language(baseline, language)
    if ours and theirs:
        return None
    if not ours and not theirs:
        return "tie"
    return "win" if ours else "loss"


def pairwise_judgement(
    key: str,
    *,
    answer: str,
    baseline: str,
    language: str,
    model_first: str | None,
    baseline_first: str | None,
) -> dict:
    """The outcome for the model of one pair: `model_first` is the judge's text with the model's answer as A,
    `baseline_first` with the baseline's answer as A."""
    penalty = pairwise_penalty(answer, baseline, language)
    if penalty is not None:
        return {
            "key": key,
            "outcome": penalty,
            "penalty": "wrong_language",
            "raw": None,
            "parse_failure": False,
        }
    first, second = parse_verdict(model_first or ""), parse_verdict(baseline_first or "")
    raw = {"model_first": model_first, "baseline_first": baseline_first, "verdicts": [first, second]}
    if first is None or second is None:
        return {"key": key, "outcome": None, "penalty": None, "raw": raw, "parse_failure": True}
    if first == "A" and second == "B":
        outcome = "win"
    elif first == "B" and second == "A":
        outcome = "loss"
    else:
        outcome = "tie"
    return {"key": key, "outcome": outcome, "penalty": None, "raw": raw, "parse_failure": False}


def bootstrap_interval(values: Sequence[float], *, samples: int, seed: int = 0) -> list[float] | None:
    """The 2.5th and 97.5th percentiles of the mean over `samples` resamples (None for no values)."""
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    return [means[int(0.025 * (samples - 1))], means[int(0.975 * (samples - 1))]]


def _mean_with_interval(values_by_question: dict[str, list[float]], samples: int) -> dict:
    per_question = [statistics.fmean(v) for v in values_by_question.values() if v]
    flat = [x for v in values_by_question.values() for x in v]
    return {
        "mean": statistics.fmean(flat) if flat else None,
        "num": len(flat),
        "ci95": bootstrap_interval(per_question, samples=samples),
    }


def grade_scores(judgements: Iterable[dict], *, samples: int) -> dict:
    """Mean grade overall, per turn and per category with bootstrap intervals; parse failures and penalties.
    Each judgement carries `question_id`, `turn`, `category`, `grade`, `penalty`, `parse_failure`."""
    rows = list(judgements)
    graded = [r for r in rows if not r["parse_failure"]]

    def grouped(keep) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for r in graded:
            if keep(r):
                out.setdefault(r["question_id"], []).append(r["grade"])
        return out

    turns = sorted({r["turn"] for r in rows})
    categories = sorted({r["category"] for r in rows})
    return {
        **_mean_with_interval(grouped(lambda r: True), samples),
        "per_turn": {
            str(t): _mean_with_interval(grouped(lambda r, t=t: r["turn"] == t), samples) for t in turns
        },
        "per_category": {
            c: _mean_with_interval(grouped(lambda r, c=c: r["category"] == c), samples) for c in categories
        },
        "num_judgements": len(rows),
        "parse_failures": sum(r["parse_failure"] for r in rows),
        "parse_failure_keys": [r["key"] for r in rows if r["parse_failure"]],
        "penalties": sum(r["penalty"] is not None for r in rows),
        "penalty_keys": [r["key"] for r in rows if r["penalty"] is not None],
    }


def pairwise_scores(judgements: Iterable[dict], *, samples: int) -> dict:
    """Wins, ties and losses of the model against the baseline, the win rate (ties half) with its interval."""
    rows = list(judgements)
    decided = [r for r in rows if not r["parse_failure"]]
    value = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    by_question: dict[str, list[float]] = {}
    for r in decided:
        by_question.setdefault(r["question_id"], []).append(value[r["outcome"]])
    counts = {outcome: sum(r["outcome"] == outcome for r in decided) for outcome in ("win", "tie", "loss")}
    rate = _mean_with_interval(by_question, samples)
    return {
        **counts,
        "win_rate": rate["mean"],
        "ci95": rate["ci95"],
        "num_judgements": len(rows),
        "parse_failures": sum(r["parse_failure"] for r in rows),
        "parse_failure_keys": [r["key"] for r in rows if r["parse_failure"]],
        "penalties": sum(r["penalty"] is not None for r in rows),
        "penalty_keys": [r["key"] for r in rows if r["penalty"] is not None],
    }
