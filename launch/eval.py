"""Generate responses with a model and score them with IFEval (English and Finnish).

    torchrun --nproc_per_node 8 launch/eval.py --config recipes/eval/ifeval.yaml model.path=RUN/final
    python launch/eval.py --config recipes/test/tiny_eval.yaml model.path=outputs/tiny_sft/final
    python launch/eval.py --config RECIPE --dry-run          # validate, count prompts, exit

A re-run continues where an interrupted one stopped (responses.jsonl is appended as it goes).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.errors import Unreachable  # noqa: E402
from eval.config import EvalConfig  # noqa: E402
from eval.generate import resolve_eval_template  # noqa: E402
from eval.judge.job import (  # noqa: E402
    answer_files,
    check_judge_outputs,
    judge_record,
    read_baseline,
    select_questions,
)
from eval.record import check_record, model_identity  # noqa: E402
from eval.runner import benchmark_record, check_earlier_responses, run_eval, select_benchmark  # noqa: E402
from runtime.cli import exit_process, run_job  # noqa: E402
from runtime.model import load_tokenizer  # noqa: E402


def dry_run(cfg: EvalConfig, world_size: int) -> list[str]:
    """What the run would check first: benchmarks, model and tokenizer, template, earlier responses. Only what
    is unreachable offline (hub data or models not in the cache) is a note; anything else fails as the run would."""
    lines = [f"config valid; output_dir {cfg.output_dir}; world size {world_size}; sharding {cfg.sharding}"]
    questions = {}
    for bench in cfg.benchmarks:
        try:
            if bench.kind == "judge":
                questions[bench.name] = select_questions(bench)
                read_baseline(bench, questions[bench.name])
                turns = sum(len(q.turns) for q in questions[bench.name])
                baseline = f", compared with {bench.baseline}" if bench.baseline else ""
                lines.append(f"{bench.name}: {len(questions[bench.name])} questions, {turns} turns to answer and "
                             f"judge{baseline} ({bench.path})")  # fmt: skip
            else:
                lines.append(f"{bench.name}: {select_benchmark(bench).describe()} from {bench.path}")
        except Unreachable as exc:
            lines.append(f"{bench.name}: not reachable from here ({str(exc).splitlines()[0]})")
    try:
        tokenizer = load_tokenizer(cfg.model)
    except Unreachable as exc:
        lines.append(f"model: not reachable from here ({str(exc).splitlines()[0]})")
    else:
        template = resolve_eval_template(tokenizer, cfg.template)
        model = model_identity(cfg.model, seed=cfg.seed)
        for bench in cfg.benchmarks:
            record = benchmark_record(cfg, bench, template, model)
            bench_dir = Path(cfg.output_dir) / bench.name
            if bench.kind == "ifeval":
                check_earlier_responses(bench_dir, record)
            elif bench.name in questions:
                check_record(
                    bench_dir, record, outputs=answer_files(bench_dir, questions[bench.name]), what="answers"
                )
        lines.append(f"chat template: {template.name} (end of turn {template.end_of_turn!r})")
        if questions:
            lines.append(judge_line(cfg, questions))
    lines.append(
        f"generation: batch {cfg.generation.batch_size}, max_new_tokens {cfg.generation.max_new_tokens}, "
        f"{'sampling' if cfg.generation.do_sample else 'greedy'}"
    )
    return lines


def judge_line(cfg: EvalConfig, questions: dict) -> str:
    """The judge as the run will load it, and its earlier judgements checked (a note when out of reach)."""
    try:
        tokenizer = load_tokenizer(cfg.judge.model)
    except Unreachable as exc:
        return f"judge: not reachable from here ({str(exc).splitlines()[0]})"
    template = resolve_eval_template(tokenizer, cfg.judge.template)
    model = model_identity(cfg.model, seed=cfg.seed)
    for bench in cfg.benchmarks:
        if bench.name in questions:
            answers = benchmark_record(
                cfg, bench, resolve_eval_template(load_tokenizer(cfg.model), cfg.template), model
            )
            check_judge_outputs(
                Path(cfg.output_dir) / bench.name, judge_record(cfg, bench, template, answers)
            )
    return (f"judge: {cfg.judge.model.path or 'random init'} (chat template {template.name}), {cfg.judge.sharding}, "
            f"max_new_tokens {cfg.judge.generation.max_new_tokens}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_job(
        sys.argv[1:] if argv is None else argv,
        prog="launch/eval.py",
        config_cls=EvalConfig,
        description="IFEval generation and scoring",
        run=run_eval,
        dry_run=dry_run,
    )


if __name__ == "__main__":
    exit_process(main())
