"""Memory and throughput planner: per-device memory of a recipe under FSDP2, the largest micro batch that fits,
and a throughput estimate. Pure arithmetic: no model is built, nothing is downloaded.

python launch/plan.py --config recipes/demo/sft.yaml --gpu cpu --gpus-per-node 2
python launch/plan.py --config RECIPE.yaml --nodes 4 --gpus-per-node 8 --gpu mi250x      # Poro 34B on 32 GCDs
python launch/plan.py --config RECIPE.yaml --arch poro-34b train.activation_checkpointing=true
python launch/plan.py --config recipes/poro34b/eval_ifeval.yaml --nodes 4 --arch poro-34b     # eval, translate too
See docs/memory.md for the formulas.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.errors import SisuError  # noqa: E402
from launch.jobs import JOBS  # noqa: E402
from planner.architectures import ARCHITECTURES  # noqa: E402
from planner.report import PlanRequest, make_plan  # noqa: E402
from runtime.devices import DEVICES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="launch/plan.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="SFT or DPO recipe (YAML)")
    parser.add_argument(
        "--job",
        choices=["sft", "dpo", "eval", "translate", "make_pairs"],
        default=None,
        help="default: detected from the recipe",
    )
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=8, help="ranks per node (GCDs on MI250X)")
    parser.add_argument("--gpu", default="mi250x", help=f"device: {', '.join(DEVICES)}")
    parser.add_argument("--gpu-memory-gib", type=float, default=None, help="override the device memory")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="override the peak dense bf16 TFLOP/s"
    )
    parser.add_argument("--arch", default=None, help=f"use a known architecture: {', '.join(ARCHITECTURES)}")
    parser.add_argument("--reference-arch", default=None, help="DPO: architecture of a different reference")
    parser.add_argument(
        "--judge-arch", default=None, help="eval with judge benchmarks: the judge's architecture (e.g. llama-3-70b)"
    )
    parser.add_argument(
        "--mfu", type=float, default=0.40, help="assumed model FLOP utilisation (default 0.40)"
    )
    parser.add_argument("--margin", type=float, default=0.10, help="share of device memory kept free")
    parser.add_argument(
        "--overhead-gib", type=float, default=None, help="framework overhead (default 2 on GPU, 0 on CPU)"
    )
    parser.add_argument("--runtime-gib", type=float, default=None, help="CPU: runtime baseline RSS")
    parser.add_argument(
        "--measure-runtime", action="store_true", help="CPU: measure the runtime baseline in a subprocess"
    )
    parser.add_argument(
        "--count-data", action="store_true", help="tokenize the recipe's data for steps and time per epoch"
    )
    parser.add_argument("--max-micro-batch", type=int, default=256)
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        default=None,
        help="eval/translate/make_pairs: the longest prompt in tokens (default: 1024 for eval, max_prompt_tokens for make_pairs, estimated for translate)",
    )
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides, as for launch/sft.py")
    args = parser.parse_args(argv)
    request = PlanRequest(
        configs=JOBS,
        config=args.config,
        overrides=args.overrides,
        job=args.job,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        gpu=args.gpu,
        gpu_memory_gib=args.gpu_memory_gib,
        peak_tflops=args.peak_tflops,
        arch=args.arch,
        reference_arch=args.reference_arch,
        judge_arch=args.judge_arch,
        mfu=args.mfu,
        margin=args.margin,
        overhead_gib=args.overhead_gib,
        runtime_gib=args.runtime_gib,
        measure_runtime=args.measure_runtime,
        count_data=args.count_data,
        max_micro_batch=args.max_micro_batch,
        prompt_tokens=args.prompt_tokens,
    )
    try:
        result = make_plan(request)
    except SisuError as exc:  # PlanError, ConfigError, DataError: one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return exc.exit_code
    print("\n".join(result.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
