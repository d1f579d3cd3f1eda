"""Supervised fine-tuning.

torchrun --nnodes 4 --nproc_per_node 8 launch/sft.py --config recipes/poro34b/sft_en_fi_100pct.yaml [k=v ...]
python launch/sft.py --config recipes/test/tiny_sft.yaml            # one CPU process
python launch/sft.py --config RECIPE --dry-run                      # validate and print the plan
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.cli import exit_process, run_job  # noqa: E402
from trainer.jobs import SFTConfig  # noqa: E402
from trainer.sft import dry_run_sft, run_sft  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_job(
        sys.argv[1:] if argv is None else argv,
        prog="launch/sft.py",
        config_cls=SFTConfig,
        description="Supervised fine-tuning with FSDP2",
        run=run_sft,
        dry_run=dry_run_sft,
    )


if __name__ == "__main__":
    exit_process(main())
