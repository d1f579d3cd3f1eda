"""Direct preference optimisation against a frozen reference.

torchrun --nnodes 4 --nproc_per_node 8 launch/dpo.py --config recipes/poro34b/dpo_both.yaml [k=v ...]
python launch/dpo.py --config recipes/test/tiny_dpo.yaml            # one CPU process
python launch/dpo.py --config RECIPE --dry-run                      # validate and print the plan
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.cli import exit_process, run_job  # noqa: E402
from trainer.dpo import dry_run_dpo, run_dpo  # noqa: E402
from trainer.jobs import DPOConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return run_job(
        sys.argv[1:] if argv is None else argv,
        prog="launch/dpo.py",
        config_cls=DPOConfig,
        description="DPO with FSDP2 and a frozen reference model",
        run=run_dpo,
        dry_run=dry_run_dpo,
    )


if __name__ == "__main__":
    exit_process(main())
