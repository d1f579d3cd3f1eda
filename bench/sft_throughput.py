"""SFT throughput: sisu against TRL's SFTTrainer on the same model, data, batch and max length.

    .venv/bin/python bench/sft_throughput.py                       # defaults below; about 45 min on 2 cores
    .venv/bin/python bench/sft_throughput.py --steps 3 --repeats 1 # a quick check
    .venv/bin/python bench/sft_throughput.py --micro-batch 2       # less padding to save on TRL's side
    .venv/bin/python bench/sft_throughput.py --sisu-override data.packing=false

Both systems train SmolLM2-135M-Instruct (default) in fp32 on the CPU in one process, on the same synthetic
chats (written by this script, deterministic for --seed; long-tailed token lengths, median about 250 and p90
about 800 before truncation to --max-seq-len 512), in file order, with the same global batch (--global-batch 8
= --micro-batch 4, the paper's micro batch, x 2 accumulation steps), constant learning rate 2e-5 without
warmup, gradient clipping at 1.0, no activation checkpointing, and the loss on the full sequence. sisu packs
each optimizer step's examples (bench/recipes/sft.yaml; the same examples and losses as unpacked); TRL runs
without packing and without padding-free batches (its faster setting here). sisu and TRL alternate (A B A B)
--repeats times; the first --warmup-steps steps of every run are left out of its throughput. One JSON line goes
to stdout and is appended to bench/results.jsonl. See bench/README.md.
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

TARGETS = {"tokens_per_second_ratio": 1.6, "peak_rss_ratio": 0.85}


def sisu_command(args: argparse.Namespace, data: Path, out: Path) -> list[str]:
    return [
        args.sisu_python,
        "launch/sft.py",
        "--config",
        "bench/recipes/sft.yaml",
        f"output_dir={out}",
        f"model.path={args.model}",
        f"seed={args.seed}",
        f"data.sources.0.path={data}",
        f"data.cache_dir={out / 'data-cache'}",
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
        "sft",
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
    ]
    for item in args.trl_arg:
        cmd += ["--arg", item]
    return cmd


def run_one(name: str, repeat: int, *, args: argparse.Namespace, data: Path, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{name}-{repeat}"
    if name == "sisu":
        child = harness.run_child(sisu_command(args, data, out), log=out / "run.log", timeout=args.timeout)
        steps = harness.sisu_steps(out / "metrics.jsonl")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # sisu's checkpoint after the last step
    else:
        child = harness.run_child(trl_command(args, data, out), log=out / "run.log", timeout=args.timeout)
        steps = harness.read_jsonl(out / "steps.jsonl")
    return harness.summarize_run(steps, warmup=args.warmup_steps, child=child, expected_steps=args.steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_common_args(parser, steps=6, global_batch=8, micro_batch=4)
    args = parser.parse_args(argv)
    args.lr = 2e-5 if args.lr is None else args.lr
    harness.check_args(args)
    result = harness.header(args, "sft_throughput")
    temporary = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sisu-bench-sft-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    records = synthetic.make_sft_records(args.steps * args.global_batch, seed=args.seed)
    data = synthetic.write_jsonl(records, workdir / "sft.jsonl")
    tokenizer = synthetic.load_tokenizer(args.model)
    lengths = synthetic.sft_token_lengths(records, tokenizer)
    generator = synthetic.sft_token_lengths(synthetic.make_sft_records(1000, seed=args.seed), tokenizer)
    data_info = {
        "records": len(records),
        "token_lengths": synthetic.length_summary(lengths, max_len=args.max_seq_len),
        "generator_token_lengths_1000": synthetic.length_summary(generator, max_len=args.max_seq_len),
        "padding_share_in_file_order": synthetic.padding_share(
            lengths, micro_batch=args.micro_batch, max_len=args.max_seq_len
        ),
    }
    print(
        f"[bench] data: {len(records)} chats, tokens median {data_info['token_lengths']['median']}, p90 "
        f"{data_info['token_lengths']['p90']} before truncation to {args.max_seq_len} (generator over 1000: median "
        f"{data_info['generator_token_lengths_1000']['median']}, p90 {data_info['generator_token_lengths_1000']['p90']}); "
        f"padding share of file-order micro-batches {data_info['padding_share_in_file_order']}",
        file=sys.stderr,
    )

    systems = ["sisu"] if args.skip_trl else ["sisu", "trl"]
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
        "global_batch": args.global_batch,
        "micro_batch": args.micro_batch,
        "grad_accum": args.global_batch // args.micro_batch,
        "max_seq_len": args.max_seq_len,
        "lr": args.lr,
        "seed": args.seed,
        "sisu_overrides": args.sisu_override,
        "trl_args": args.trl_arg,
    }
    result["data"] = data_info
    result["sisu"] = harness.aggregate(runs["sisu"])
    if "trl" in runs:
        sisu, trl = result["sisu"], harness.aggregate(runs["trl"])
        result["trl"] = trl
        tokens_ratio = harness.ratio(sisu["tokens_per_second"], trl["tokens_per_second"])
        rss_ratio = harness.ratio(sisu["peak_rss_gb"], trl["peak_rss_gb"])
        result["ratios"] = {
            "tokens_per_second": tokens_ratio,
            "peak_rss": rss_ratio,
            "process_peak_rss": harness.ratio(sisu["process_peak_rss_gb"], trl["process_peak_rss_gb"]),
        }
        result["targets"] = {
            "tokens_per_second_ratio": {
                "target": f">= {TARGETS['tokens_per_second_ratio']}",
                "met": tokens_ratio is not None and tokens_ratio >= TARGETS["tokens_per_second_ratio"],
            },
            "peak_rss_ratio": {
                "target": f"<= {TARGETS['peak_rss_ratio']}",
                "met": rss_ratio is not None and rss_ratio <= TARGETS["peak_rss_ratio"],
            },
        }
        result["paired_ratios"] = {
            "tokens_per_second": harness.paired_ratios(sisu, trl, "tokens_per_second"),
            "peak_rss": harness.paired_ratios(sisu, trl, "peak_rss_gb"),
        }
        result["real_tokens_measured"] = harness.compare_tokens({"sisu": sisu, "trl": trl})
    harness.finish(result, args)
    if temporary:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"[bench] data, logs and metrics kept in {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
