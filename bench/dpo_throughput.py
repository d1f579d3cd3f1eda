"""DPO throughput: sisu (live and precomputed reference) against TRL's DPOTrainer (live reference).

    .venv/bin/python bench/dpo_throughput.py                        # defaults below; 28 min on the busy 2-core machine
    .venv/bin/python bench/dpo_throughput.py --steps 3 --repeats 1  # a quick check
    .venv/bin/python bench/dpo_throughput.py --sisu-modes live --sisu-override data.group_by_length=true

All runs train SmolLM2-135M-Instruct (default) in fp32 on the CPU in one process on the same synthetic
preference pairs (written by this script, deterministic for --seed): TRL's conversational format (`prompt`
messages, `chosen`/`rejected` assistant messages), which sisu's `preference` format reads unchanged. Pair
lengths (prompt + the longer completion, chat template included) are long-tailed, median about 250 and p90 about
800 before truncation to --max-seq-len 512; every prompt is shorter than --max-prompt-length 256, so sisu's
prompt limit never applies and both systems see the same tokens (TRL 1.x has no separate prompt limit: it cuts
prompt + completion to max_length from the right, as sisu does with the completion). Sigmoid loss, beta 0.1,
constant learning rate 5e-7 without warmup, gradient clipping at 1.0, no activation checkpointing, file order,
global batch --global-batch 4 pairs = --micro-batch 2 x 2 accumulation steps (chosen and rejected rows in one
forward on both sides).

Per repeat: sisu with reference.mode=live, TRL with a live reference (precompute_ref_log_probs=False), sisu with
reference.mode=precompute (its pass over the data before the first step is not part of the step time; it shows in
wall_seconds). Reported: pairs/s and real tokens/s over the steps after --warmup-steps, peak RSS, final loss,
their ratios, and precompute's step-time reduction against live.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness, synthetic  # noqa: E402

TARGETS = {"pairs_per_second_ratio": 1.15, "precompute_step_time_reduction": 0.20, "peak_rss_ratio": 0.85}


def sisu_command(args: argparse.Namespace, mode: str, data: Path, out: Path) -> list[str]:
    return [
        args.sisu_python,
        "launch/dpo.py",
        "--config",
        "bench/recipes/dpo.yaml",
        f"output_dir={out}",
        f"model.path={args.model}",
        f"seed={args.seed}",
        f"reference.mode={mode}",
        f"dpo.beta={args.beta}",
        f"data.sources.0.path={data}",
        f"data.cache_dir={out / 'data-cache'}",
        f"data.max_prompt_length={args.max_prompt_length}",
        f"train.max_steps={args.steps}",
        f"train.global_batch_size={args.global_batch}",
        f"train.micro_batch_size={args.micro_batch}",
        f"train.max_seq_len={args.max_seq_len}",
        f"optim.lr={args.lr}",
        *args.sisu_override,
    ]


def trl_command(args: argparse.Namespace, data: Path, out: Path) -> list[str]:
    cmd = [
        args.trl_python,
        str(harness.TRL_RUNNER),
        "--task",
        "dpo",
        "--data",
        str(data),
        "--model",
        args.model,
        "--output-dir",
        str(out),
        "--metrics",
        str(out / "steps.jsonl"),
        "--steps",
        str(args.steps),
        "--global-batch",
        str(args.global_batch),
        "--micro-batch",
        str(args.micro_batch),
        "--max-length",
        str(args.max_seq_len),
        "--lr",
        str(args.lr),
        "--seed",
        str(args.seed),
        "--beta",
        str(args.beta),
    ]
    for item in args.trl_arg:
        cmd += ["--arg", item]
    return cmd


def run_one(name: str, repeat: int, *, args: argparse.Namespace, data: Path, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{name}-{repeat}"
    if name.startswith("sisu_"):
        cmd = sisu_command(args, name.removeprefix("sisu_"), data, out)
        child = harness.run_child(cmd, log=out / "run.log", timeout=args.timeout)
        steps = harness.sisu_steps(out / "metrics.jsonl")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # sisu's checkpoint after the last step
    else:
        child = harness.run_child(trl_command(args, data, out), log=out / "run.log", timeout=args.timeout)
        steps = harness.read_jsonl(out / "steps.jsonl")
    return harness.summarize_run(steps, warmup=args.warmup_steps, child=child, expected_steps=args.steps)


def check(value: float | None, target: float, *, at_least: bool) -> dict[str, Any]:
    met = value is not None and (value >= target if at_least else value <= target)
    return {"target": f"{'>=' if at_least else '<='} {target}", "met": met}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_args(parser, steps=4, global_batch=4, micro_batch=2)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--max-prompt-length", type=int, default=256)
    parser.add_argument(
        "--sisu-modes", default="live,precompute", help="sisu reference modes to run (comma-separated)"
    )
    args = parser.parse_args(argv)
    args.lr = 5e-7 if args.lr is None else args.lr
    harness.check_args(args)
    modes = [m.strip() for m in args.sisu_modes.split(",") if m.strip()]
    if not modes or any(m not in ("live", "precompute") for m in modes):
        raise SystemExit(f"--sisu-modes: live and/or precompute, got {args.sisu_modes!r}")
    result = harness.header(args, "dpo_throughput")
    temporary = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sisu-bench-dpo-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    records = synthetic.make_preference_records(
        args.steps * args.global_batch, seed=args.seed, max_prompt_tokens=args.max_prompt_length
    )
    data = synthetic.write_jsonl(records, workdir / "preference.jsonl")
    tokenizer = synthetic.load_tokenizer(args.model)
    lengths, prompts = synthetic.preference_token_lengths(records, tokenizer)
    if max(prompts) >= args.max_prompt_length:
        raise SystemExit(
            f"a synthetic prompt has {max(prompts)} tokens, not under --max-prompt-length {args.max_prompt_length}: "
            "sisu would cut it and TRL would not"
        )
    generator, _ = synthetic.preference_token_lengths(
        synthetic.make_preference_records(1000, seed=args.seed, max_prompt_tokens=args.max_prompt_length),
        tokenizer,
    )
    data_info = {
        "pairs": len(records),
        "pair_token_lengths": synthetic.length_summary(lengths, max_len=args.max_seq_len),
        "prompt_tokens": {"median": synthetic.percentile(prompts, 50), "max": max(prompts)},
        "generator_pair_token_lengths_1000": synthetic.length_summary(generator, max_len=args.max_seq_len),
    }
    print(
        f"[bench] data: {len(records)} pairs, prompt + longer completion tokens median "
        f"{data_info['pair_token_lengths']['median']}, p90 {data_info['pair_token_lengths']['p90']} before truncation "
        f"to {args.max_seq_len} (generator over 1000: median {data_info['generator_pair_token_lengths_1000']['median']}, "
        f"p90 {data_info['generator_pair_token_lengths_1000']['p90']}); prompts at most {max(prompts)} tokens",
        file=sys.stderr,
    )

    systems = [f"sisu_{modes[0]}"] + ([] if args.skip_trl else ["trl"]) + [f"sisu_{m}" for m in modes[1:]]
    runs = harness.alternate(
        systems,
        args.repeats,
        lambda name, repeat: run_one(name, repeat, args=args, data=data, workdir=workdir),
    )
    result["settings"] = {
        "model": args.model,
        "dtype": "float32",
        "device": "cpu, 1 process",
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "repeats": args.repeats,
        "global_batch_pairs": args.global_batch,
        "micro_batch_pairs": args.micro_batch,
        "grad_accum": args.global_batch // args.micro_batch,
        "max_seq_len": args.max_seq_len,
        "max_prompt_length": args.max_prompt_length,
        "beta": args.beta,
        "loss": "sigmoid",
        "lr": args.lr,
        "seed": args.seed,
        "sisu_modes": modes,
        "sisu_overrides": args.sisu_override,
        "trl_args": args.trl_arg,
        "trl_reference": "live (precompute_ref_log_probs=False)",
    }
    result["data"] = data_info
    for name in systems:
        result[name] = harness.aggregate(runs[name])
    ratios: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    live, precompute, trl = result.get("sisu_live"), result.get("sisu_precompute"), result.get("trl")
    if live and trl:
        ratios["pairs_per_second_live_vs_trl"] = harness.ratio(
            live["pairs_per_second"], trl["pairs_per_second"]
        )
        ratios["tokens_per_second_live_vs_trl"] = harness.ratio(
            live["tokens_per_second"], trl["tokens_per_second"]
        )
        ratios["peak_rss_live_vs_trl"] = harness.ratio(live["peak_rss_gb"], trl["peak_rss_gb"])
        ratios["process_peak_rss_live_vs_trl"] = harness.ratio(
            live["process_peak_rss_gb"], trl["process_peak_rss_gb"]
        )
        targets["pairs_per_second_ratio"] = check(
            ratios["pairs_per_second_live_vs_trl"], TARGETS["pairs_per_second_ratio"], at_least=True
        )
        targets["peak_rss_ratio"] = check(
            ratios["peak_rss_live_vs_trl"], TARGETS["peak_rss_ratio"], at_least=False
        )
        result["paired_ratios"] = {
            "pairs_per_second_live_vs_trl": harness.paired_ratios(live, trl, "pairs_per_second"),
            "peak_rss_live_vs_trl": harness.paired_ratios(live, trl, "peak_rss_gb"),
        }
        result["real_tokens_measured"] = harness.compare_tokens({"sisu_live": live, "trl": trl})
    if precompute and trl:
        ratios["pairs_per_second_precompute_vs_trl"] = harness.ratio(
            precompute["pairs_per_second"], trl["pairs_per_second"]
        )
        ratios["peak_rss_precompute_vs_trl"] = harness.ratio(precompute["peak_rss_gb"], trl["peak_rss_gb"])
    if live and precompute:
        step_ratio = harness.ratio(precompute["step_seconds_mean"], live["step_seconds_mean"])
        ratios["step_seconds_precompute_vs_live"] = step_ratio
        reduction = None if step_ratio is None else round(1 - step_ratio, 3)
        paired = harness.paired_ratios(precompute, live, "step_seconds_mean")
        result.setdefault("paired_ratios", {})["step_seconds_precompute_vs_live"] = paired
        ratios["precompute_step_time_reduction"] = reduction
        targets["precompute_step_time_reduction"] = check(
            reduction, TARGETS["precompute_step_time_reduction"], at_least=True
        )
    result["ratios"] = ratios
    result["targets"] = targets
    harness.finish(result, args)
    if temporary:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"[bench] data, logs and metrics kept in {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
