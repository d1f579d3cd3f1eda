"""Generate responses with a model and score them with IFEval (English and Finnish).

    torchrun --nproc_per_node 8 launch/eval.py --config recipes/eval/ifeval.yaml model.path=RUN/final
    python launch/eval.py --config recipes/test/tiny_eval.yaml model.path=outputs/tiny_sft/final
    python launch/eval.py --config RECIPE --dry-run          # validate, count prompts, exit

A re-run continues where an interrupted one stopped (responses.jsonl is appended as it goes).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from eval.config import EvalConfig  # noqa: E402
from eval.runner import load_benchmark, run_eval  # noqa: E402
from trainer.cli import run_job  # noqa: E402


def dry_run(cfg: EvalConfig, world_size: int) -> list[str]:
    lines = [f"config valid; output_dir {cfg.output_dir}; world size {world_size}; sharding {cfg.sharding}"]
    for bench in cfg.benchmarks:
        try:
            lines.append(f"{bench.name}: {len(load_benchmark(bench))} prompts from {bench.path}")
        except (ValueError, OSError) as exc:
            lines.append(f"{bench.name}: not reachable from here ({str(exc).splitlines()[0]})")
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
    sys.exit(main())
