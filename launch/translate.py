"""Translate chat or preference data with a causal LM (few-shot, segment by segment), clean it, report.

    torchrun --nproc_per_node 8 launch/translate.py --config recipes/translate/demo.yaml model.path=MODEL
    python launch/translate.py --config recipes/test/tiny_translate.yaml
    python launch/translate.py --config RECIPE --dry-run       # validate, count segments, show a prompt

A re-run continues where an interrupted one stopped (progress.jsonl is appended as records finish).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from eval.translation.config import TranslateConfig  # noqa: E402
from eval.translation.job import dry_run, run_translate  # noqa: E402
from runtime.cli import exit_process, run_job  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_job(
        sys.argv[1:] if argv is None else argv,
        prog="launch/translate.py",
        config_cls=TranslateConfig,
        description="translate chat and preference data with the model itself",
        run=run_translate,
        dry_run=dry_run,
    )


if __name__ == "__main__":
    exit_process(main())
