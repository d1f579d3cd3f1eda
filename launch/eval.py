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
from eval.record import model_identity  # noqa: E402
from eval.runner import benchmark_record, check_earlier_responses, run_eval, select_benchmark  # noqa: E402
from runtime.cli import exit_process, run_job  # noqa: E402
from runtime.model import load_tokenizer  # noqa: E402


def dry_run(cfg: EvalConfig, world_size: int) -> list[str]:
    """What the run would check first: benchmarks, model and tokenizer, template, earlier responses. Only what
    is unreachable offline (hub data or models not in the cache) is a note; anything else fails as the run would."""
    lines = [f"config valid; output_dir {cfg.output_dir}; world size {world_size}; sharding {cfg.sharding}"]
    for bench in cfg.benchmarks:
        try:
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
            check_earlier_responses(Path(cfg.output_dir) / bench.name, record)
        lines.append(f"chat template: {template.name} (end of turn {template.end_of_turn!r})")
    lines.append(
        f"generation: batch {cfg.generation.batch_size}, max_new_tokens {cfg.generation.max_new_tokens}, "
        f"{'sampling' if cfg.generation.do_sample else 'greedy'}"
    )
    return lines


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
