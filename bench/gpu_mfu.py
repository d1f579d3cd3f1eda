"""GPU model-FLOPs utilisation of sisu's SFT step: a ~1B Llama-style model, bf16, sequence 2048, packing.

    .venv/bin/python bench/gpu_mfu.py                      # one GPU: TinyLlama-1.1B shape, 12 steps
    .venv/bin/python bench/gpu_mfu.py --compile            # torch.compile per decoder block
    .venv/bin/python bench/gpu_mfu.py --nproc 8            # one node (torchrun)
    .venv/bin/python bench/gpu_mfu.py --smoke              # CPU, a tiny model: checks the script, no timing

It runs `launch/sft.py` (the trainer users run) on synthetic long-tailed chats (`bench/synthetic.py and bench/harness.py`), packed into
rows of --max-seq-len, with a random-init model of the TinyLlama-1.1B shape (22 layers, hidden 2048, 32 heads, 4
KV heads, intermediate 5632) and the tokenizer given by --tokenizer. MFU is the trainer's own `mfu` metric:
model FLOPs (6 N per token plus the attention term, `runtime/flops.py`) over the device's peak dense bf16
FLOP/s from `runtime/devices.py`. The first --warmup-steps steps (allocator, kernels, compilation) are left out;
the line reports the median over the rest, tokens/s per device and the peak memory, and is appended to
bench/results.jsonl. Target on one H100/H200: MFU >= 0.40.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness, synthetic  # noqa: E402

TINYLLAMA_1B = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}
SMOKE = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
}
SMOLLM2_TOKENIZER = harness.DEFAULT_MODEL
TINY_TOKENIZER = harness.REPO / "recipes" / "test" / "tokenizer"


def flow(mapping: dict) -> str:
    """A YAML flow mapping for a command-line override."""
    return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in mapping.items()) + "}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--micro-batch", type=int, default=8, help="packed rows per forward")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--nproc", type=int, default=1, help="processes (GPUs) on this node")
    parser.add_argument("--compile", action="store_true", help="torch.compile each decoder block")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer directory (default: SmolLM2's, from launch/convert_gguf.py, else the tiny test tokenizer)",
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, 2 steps: checks the plumbing")
    parser.add_argument("--workdir", default=None, help="keep data, logs and metrics here")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--results", default=str(harness.RESULTS))
    parser.add_argument("--no-append", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.steps, args.warmup_steps, args.micro_batch, args.max_seq_len = 2, 1, 2, 256
    tokenizer = args.tokenizer or str(
        SMOLLM2_TOKENIZER if (SMOLLM2_TOKENIZER / "tokenizer.json").is_file() else TINY_TOKENIZER
    )
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sisu-bench-mfu-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rows_per_step = args.micro_batch * args.grad_accum * args.nproc
    # examples per step (global_batch_size counts examples) that fill about rows_per_step packed rows
    sample = synthetic.make_sft_records(400, seed=0)
    lengths = [
        min(n, args.max_seq_len) for n in synthetic.sft_token_lengths(sample, synthetic.load_tokenizer(tokenizer))
    ]
    per_row = max(1, int(0.95 * args.max_seq_len / statistics.fmean(lengths)))
    unit = args.micro_batch * args.nproc  # global_batch_size must be a multiple of micro batch x world size
    examples_per_step = max(unit, round(per_row * rows_per_step / unit) * unit)
    data = synthetic.write_jsonl(
        synthetic.make_sft_records(examples_per_step * args.steps, seed=0), workdir / "chats.jsonl"
    )
    out = workdir / "run"
    launcher = [sys.executable]
    if args.nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc)]
    cmd = [
        *launcher,
        "launch/sft.py",
        "--config",
        "bench/recipes/sft.yaml",
        f"output_dir={out}",
        "model.path=null",
        f"model.init_config={flow(SMOKE if args.smoke else TINYLLAMA_1B)}",
        f"model.tokenizer={tokenizer}",
        "model.dtype=float32",  # fp32 master weights; bf16 compute comes from train.mixed_precision
        f"data.sources.0.path={data}",
        f"data.cache_dir={workdir / 'data-cache'}",
        "data.packing=true",
        f"train.max_steps={args.steps}",
        f"train.global_batch_size={examples_per_step}",
        f"train.micro_batch_size={args.micro_batch}",
        f"train.max_seq_len={args.max_seq_len}",
        f"train.mixed_precision={'fp32' if args.smoke else 'bf16'}",
        f"train.compile={str(args.compile).lower()}",
        f"train.activation_checkpointing={str(args.activation_checkpointing).lower()}",
        "checkpoint.every_steps=1000000",
    ]
    print("[bench] " + " ".join(cmd), file=sys.stderr, flush=True)
    log = workdir / "run.log"
    child = harness.run_child(cmd, log=log, timeout=args.timeout)
    if child.returncode != 0:
        print(harness.tail(log), file=sys.stderr)
        raise SystemExit(f"[bench] run failed (exit {child.returncode}); log {log}")
    steps = harness.read_jsonl(out / "metrics.jsonl")
    measured = steps[args.warmup_steps :] or steps[-1:]
    mfus = [s["mfu"] for s in measured if "mfu" in s]
    result = {
        "bench": "gpu_mfu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": harness.command_line(),
        "git": harness.git_info(),
        "machine": harness.machine_info(),
        "device": device_name(),
        "settings": {
            "model": "smoke" if args.smoke else "tinyllama-1.1b shape, random init",
            "tokenizer": tokenizer,
            "nproc": args.nproc,
            "micro_batch_rows": args.micro_batch,
            "examples_per_step": examples_per_step,
            "grad_accum": args.grad_accum,
            "max_seq_len": args.max_seq_len,
            "compile": args.compile,
            "activation_checkpointing": args.activation_checkpointing,
            "steps": args.steps,
            "warmup_steps": args.warmup_steps,
        },
        "mfu_median": round(statistics.median(mfus), 4) if mfus else None,
        "mfu_per_step": [round(m, 4) for m in mfus],
        "tokens_per_second_per_device": round(
            statistics.median(s["tokens_per_second"] for s in measured) / args.nproc, 1
        ),
        "padding_efficiency_median": round(statistics.median(s["padding_efficiency"] for s in measured), 4),
        "peak_memory_gb": round(max(s["peak_memory_gb"] for s in steps), 2),
        "step_seconds": [round(s["step_seconds"], 3) for s in steps],
        "loss_first_last": [round(steps[0]["loss"], 4), round(steps[-1]["loss"], 4)],
        "target": {"mfu": ">= 0.40", "met": bool(mfus) and statistics.median(mfus) >= 0.40},
    }
    harness.finish(result, args)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def device_name() -> str:
    """The GPU's name as the driver reports it (nvidia-smi or rocm-smi), else "cpu"."""
    for cmd in (
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        ["rocm-smi", "--showproductname"],
    ):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
            return done.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            continue
    return "cpu"


if __name__ == "__main__":
    sys.exit(main())
