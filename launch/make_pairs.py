"""On-policy preference pairs: sample answers with the model, pair target-language answers that follow the most
instructions against wrong-language or weaker ones, write a `preference` source and a report.

    python launch/make_pairs.py --config recipes/test/tiny_pairs.yaml
    torchrun --nproc_per_node 8 launch/make_pairs.py --config recipes/poro34b/pairs_fi.yaml
    python launch/make_pairs.py --config RECIPE --dry-run      # validate, count and screen prompts, show one

A re-run continues where an interrupted one stopped (generations.jsonl is appended as batches finish).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from eval.pairs.config import PairsConfig  # noqa: E402
from eval.pairs.job import dry_run, run_pairs  # noqa: E402
from runtime.cli import exit_process, run_job  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_job(
        sys.argv[1:] if argv is None else argv,
        prog="launch/make_pairs.py",
        config_cls=PairsConfig,
        description="on-policy preference pairs from the model's own samples",
        run=run_pairs,
        dry_run=dry_run,
    )


if __name__ == "__main__":
    exit_process(main())
