"""Judge benchmarks in launch/eval.py: the model answers every turn, a judge model grades (and compares).

Per benchmark folder (OUTPUT_DIR/<name>/):
- `answers.turn1.jsonl`, `answers.turn2.jsonl`, ...: the model's answers, one turn after the other (turn 2 sees
  the model's own turn-1 answer), on the generation engine (eval/engine.py: resumable, rank-invariant);
  `answers.jsonl`, per question its turns and answers (what another run names as its `baseline`); `run.json`, what
  the answers depend on (eval/record.py);
- `judge_single.jsonl` and `judge_pairwise.jsonl`: the judge's texts, also on the engine, for the answers the
  language penalty did not decide; `judge.json`, what the judgements depend on (the judge, its template, decoding
  and prompts, the answers, the baseline's file);
- `judgements.jsonl`: per answer the grade, the penalty or the parse failure and the judge's raw text; per pair the
  outcome; `scores.json` (`kind: judge`): mean grades overall, per turn and per category with 95% bootstrap
  intervals, win/tie/loss and the win rate against the baseline, parse failures, penalties, the response
  language rate (eval/judge/scoring.py).
The answering model is freed before the judge is loaded: a 70B judge after a 34B model on the same GPUs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.errors import DataError
from data.files import atomic_write_text
from eval.config import BenchmarkConfig, EvalConfig
from eval.engine import read_done, rewrite_rows
from eval.generate import GenerationItem, generate_all
from eval.judge.prompts import pairwise_prompt, single_prompt
from eval.judge.questions import Question, load_questions
from eval.judge.scoring import (
    grade_scores,
    in_language,
    pairwise_judgement,
    pairwise_penalty,
    pairwise_scores,
    single_judgement,
)
from eval.record import check_record, model_identity, run_identity
from runtime.distributed import broadcast_object

logger = logging.getLogger("sisu")
JUDGE_RECORD = "judge.json"


def select_questions(bench: BenchmarkConfig) -> list[Question]:
    questions = load_questions(bench.path, name=bench.subset, split=bench.split)
    return questions[: bench.limit] if bench.limit is not None else questions


def answer_files(bench_dir: Path, questions: Sequence[Question]) -> list[Path]:
    return [bench_dir / f"answers.turn{t}.jsonl" for t in range(1, max(len(q.turns) for q in questions) + 1)]


def judge_files(bench_dir: Path) -> list[Path]:
    return [bench_dir / "judge_single.jsonl", bench_dir / "judge_pairwise.jsonl"]


def read_baseline(bench: BenchmarkConfig, questions: Sequence[Question]) -> dict[str, list[str]] | None:
    """The baseline's answers by question id (None without a baseline); one line when a question is missing."""
    if bench.baseline is None:
        return None
    path = Path(bench.baseline)
    if not path.is_file():
        raise DataError(
            f"benchmark {bench.name}: baseline {path}: file not found (an answers.jsonl of a judge run)"
        )
    rows = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
            rows[str(row["question_id"])] = [str(a) for a in row["answers"]]
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{path}:{number}: not an answers.jsonl row (question_id, answers)") from None
    for question in questions:
        if len(rows.get(question.question_id, [])) < len(question.turns):
            raise DataError(
                f"{path}: no answer to every turn of question {question.question_id!r} of {bench.path}"
            )
    return rows


def judge_record(cfg: EvalConfig, bench: BenchmarkConfig, judge_template: Any, answers_record: dict) -> dict:
    """What a benchmark's judgements depend on: the judge, its template and decoding, the prompts, the answers
    (their record) and the baseline file."""
    baseline = (
        Path(bench.baseline).read_bytes() if bench.baseline and Path(bench.baseline).is_file() else None
    )
    return run_identity(
        model=model_identity(cfg.judge.model, seed=cfg.seed),
        template=judge_template,
        decoding={"max_new_tokens": cfg.judge.generation.max_new_tokens},
        sources={
            "answers": hashlib.sha256(json.dumps(answers_record, sort_keys=True).encode()).hexdigest(),
            "baseline": hashlib.sha256(baseline).hexdigest() if baseline is not None else None,
        },
        settings={
            "prompt_single": cfg.judge.prompt_single,
            "prompt_pairwise": cfg.judge.prompt_pairwise,
            "language": bench.language,
        },  # fmt: skip
    )


def check_judge_outputs(bench_dir: Path, record: dict) -> None:
    check_record(bench_dir, record, outputs=judge_files(bench_dir), what="judgements", name=JUDGE_RECORD)


def _ids(tokenizer: Any, template: Any, messages: list[dict]) -> tuple[int, ...]:
    text = template.render(tokenizer, messages, add_generation_prompt=True)
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_questions(model: Any, tokenizer: Any, template: Any, stops: Any, questions: Sequence[Question], *,
                     bench: BenchmarkConfig, bench_dir: Path, cfg: EvalConfig, info: Any) -> dict[str, list[dict]]:  # fmt: skip
    """Every turn of every question, one turn after the other; the rows of each question's turns (every rank)."""
    answers: dict[str, list[dict]] = {q.question_id: [] for q in questions}
    for turn, out_path in enumerate(answer_files(bench_dir, questions), start=1):
        asked = [q for q in questions if len(q.turns) >= turn]
        items = []
        for q in asked:
            messages = []
            for earlier, row in zip(q.turns, answers[q.question_id]):
                messages += [
                    {"role": "user", "content": earlier},
                    {"role": "assistant", "content": row["response"]},
                ]
            messages.append({"role": "user", "content": q.turns[turn - 1]})
            items.append(
                GenerationItem(q.question_id, q.turns[turn - 1], _ids(tokenizer, template, messages))
            )
        rows = generate_all(
            model, tokenizer, items, stops=stops, out_path=out_path, batch_size=cfg.generation.batch_size,
            max_new_tokens=cfg.generation.max_new_tokens, device=info.device, language=bench.language,
            do_sample=cfg.generation.do_sample, temperature=cfg.generation.temperature, top_p=cfg.generation.top_p,
            lockstep=cfg.sharding == "fsdp", seed=cfg.seed, progress=f"{bench.name} turn {turn}",
        )  # fmt: skip
        for row in broadcast_object(rows, src=0):  # every rank renders the next turn's prompts
            answers[str(row["key"])].append(row)
    if info.is_main:
        rewrite_rows(
            bench_dir / "answers.jsonl",
            [{"question_id": q.question_id, "category": q.category, "turns": list(q.turns),
              "answers": [row["response"] for row in answers[q.question_id]],
              "truncated": [row["truncated"] for row in answers[q.question_id]]} for q in questions],
        )  # fmt: skip
    return answers


def _key(question: Question, turn: int) -> str:
    return f"{question.question_id}:{turn}"


def judge_questions(judge: Any, tokenizer: Any, template: Any, stops: Any, questions: Sequence[Question],
                    answers: dict[str, list[dict]], baseline: dict[str, list[str]] | None, *, bench: BenchmarkConfig,
                    bench_dir: Path, cfg: EvalConfig, info: Any) -> dict | None:  # fmt: skip
    """Grade every answer (and compare it with the baseline's) with the judge; scores.json on rank 0."""
    texts = {q.question_id: [row["response"] for row in answers[q.question_id]] for q in questions}
    single, pairs = [], []
    for q in questions:
        for turn in range(1, len(q.turns) + 1):
            ours = texts[q.question_id][:turn]
            common = {"turns": q.turns[:turn], "reference": q.reference_for(turn), "language": bench.language}
            if in_language(ours[-1], bench.language):
                prompt = single_prompt(cfg.judge.prompt_single, answers=ours, **common)
                single.append(GenerationItem(_key(q, turn), prompt, _ids(tokenizer, template, _user(prompt))))
            if (
                baseline is not None
                and pairwise_penalty(ours[-1], baseline[q.question_id][turn - 1], bench.language) is None
            ):
                theirs = baseline[q.question_id][:turn]
                for name, a, b in (("model_first", ours, theirs), ("baseline_first", theirs, ours)):
                    prompt = pairwise_prompt(cfg.judge.prompt_pairwise, answers_a=a, answers_b=b, **common)
                    key = f"{_key(q, turn)}:{name}"
                    pairs.append(GenerationItem(key, prompt, _ids(tokenizer, template, _user(prompt))))
    generation = cfg.judge.generation
    for items, out_path in ((single, judge_files(bench_dir)[0]), (pairs, judge_files(bench_dir)[1])):
        if items:
            generate_all(
                judge, tokenizer, items, stops=stops, out_path=out_path, batch_size=generation.batch_size,
                max_new_tokens=generation.max_new_tokens, device=info.device, language=bench.language,
                do_sample=generation.do_sample, temperature=generation.temperature, top_p=generation.top_p,
                lockstep=cfg.judge.sharding == "fsdp", seed=cfg.seed, progress=f"{bench.name} judge",
            )  # fmt: skip
    if not info.is_main:
        return None
    return write_judgements(questions, texts, baseline, bench=bench, bench_dir=bench_dir, cfg=cfg)


def _user(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def write_judgements(questions: Sequence[Question], texts: dict[str, list[str]], baseline: dict[str, list[str]] | None,
                     *, bench: BenchmarkConfig, bench_dir: Path, cfg: EvalConfig) -> dict:  # fmt: skip
    """judgements.jsonl and scores.json from the answers and the judge's texts (rank 0)."""
    said_single = {k: r["response"] for k, r in read_done(judge_files(bench_dir)[0]).items()}
    said_pairs = {k: r["response"] for k, r in read_done(judge_files(bench_dir)[1]).items()}
    singles, pairs = [], []
    for q in questions:
        for turn in range(1, len(q.turns) + 1):
            key, where = _key(q, turn), {"question_id": q.question_id, "turn": turn, "category": q.category}
            answer = texts[q.question_id][turn - 1]
            judged = single_judgement(
                key, answer=answer, language=bench.language, judge_text=said_single.get(key)
            )
            singles.append({"kind": "single", **where, **judged})
            if baseline is not None:
                judged = pairwise_judgement(
                    key, answer=answer, baseline=baseline[q.question_id][turn - 1], language=bench.language,
                    model_first=said_pairs.get(f"{key}:model_first"), baseline_first=said_pairs.get(f"{key}:baseline_first"),
                )  # fmt: skip
                pairs.append({"kind": "pairwise", **where, **judged})
    rewrite_rows(bench_dir / "judgements.jsonl", singles + pairs)
    samples = cfg.judge.bootstrap_samples
    answers_all = [a for q in questions for a in texts[q.question_id]]
    scores = {
        "kind": "judge",
        "benchmark": bench.name,
        "language": bench.language,
        "num_questions": len(questions),
        "num_answers": len(answers_all),
        "response_language_rate": sum(in_language(a, bench.language) for a in answers_all)
        / max(len(answers_all), 1),
        "grades": grade_scores(singles, samples=samples),
        "pairwise": pairwise_scores(pairs, samples=samples) if baseline is not None else None,
        "baseline": bench.baseline,
        "judge": cfg.judge.model.path,
    }
    atomic_write_text(bench_dir / "scores.json", json.dumps(scores, indent=2, ensure_ascii=False) + "\n")
    print(format_scores(scores))
    return scores


def _interval(ci: list[float] | None, scale: float = 1.0) -> str:
    return f"[{ci[0] * scale:.2f}, {ci[1] * scale:.2f}]" if ci else "[-]"


def format_scores(scores: dict) -> str:
    grades = scores["grades"]
    mean = "-" if grades["mean"] is None else f"{grades['mean']:.2f}"
    lines = [
        f"\n{scores['benchmark']}: {scores['num_answers']} answers to {scores['num_questions']} questions; response "
        f"language {scores['language']}: {100 * scores['response_language_rate']:.1f}%",
        f"  grade (1-10): {mean} {_interval(grades['ci95'])} over {grades['num']} graded answers; "
        f"parse failures {grades['parse_failures']}, wrong-language penalties {grades['penalties']}",
    ]
    for turn, values in grades["per_turn"].items():
        value = "-" if values["mean"] is None else f"{values['mean']:.2f}"
        lines.append(f"    turn {turn}: {value} {_interval(values['ci95'])} (n={values['num']})")
    for category, values in grades["per_category"].items():
        value = "-" if values["mean"] is None else f"{values['mean']:.2f}"
        lines.append(f"    {category:<12} {value} (n={values['num']})")
    pairwise = scores["pairwise"]
    if pairwise is not None:
        rate = "-" if pairwise["win_rate"] is None else f"{100 * pairwise['win_rate']:.1f}%"
        lines.append(
            f"  vs baseline: win rate {rate} {_interval(pairwise['ci95'], 100)}; wins {pairwise['win']}, ties "
            f"{pairwise['tie']}, losses {pairwise['loss']}; parse failures {pairwise['parse_failures']}, "
            f"penalties {pairwise['penalties']}"
        )
    return "\n".join(lines)
