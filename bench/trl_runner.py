"""TRL side of the throughput benchmarks: SFTTrainer or DPOTrainer on the bench's JSONL data.

Runs in the separate TRL environment (bench/.venv-trl, made by bench/setup_trl.sh), started by
bench/sft_throughput.py and bench/dpo_throughput.py; it imports nothing from sisu. It writes one JSON object per
optimizer step to --metrics, in the bench's shape: step, loss, step_seconds, real_tokens (non-padding tokens of
the step, all micro-batches), peak_rss_bytes (ru_maxrss of this process at the end of the step) and, for DPO,
num_pairs.

Step time: from the end of the previous optimizer step (the start of training for the first) to the end of this
one, so it includes loading and collating the step's micro-batches (as sisu's step_seconds includes its
collation) and Trainer's logging of the previous step (logging_steps=1; sisu logs every step too, outside its
step_seconds, but that is a line of JSON).

    bench/.venv-trl/bin/python bench/trl_runner.py --task sft --data D.jsonl --model M --output-dir O \
        --metrics O/steps.jsonl --steps 8 --global-batch 8 --micro-batch 2 --max-length 512 --lr 2e-5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sft", "dpo"), required=True)
    parser.add_argument(
        "--data", required=True, help="JSONL: `messages` rows (sft) or prompt/chosen/rejected (dpo)"
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--metrics", required=True, help="per-step JSONL written here")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--global-batch", type=int, required=True)
    parser.add_argument("--micro-batch", type=int, required=True)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beta", type=float, default=0.1, help="DPO beta")
    parser.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config field (JSON value or string)",
    )
    return parser.parse_args(argv)


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_rows(path: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                rows.append({key: row[key] for key in keys})
    return rows


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.global_batch % args.micro_batch:
        raise SystemExit("--global-batch must be a multiple of --micro-batch")

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="sdpa")

    common: dict[str, Any] = {
        "output_dir": args.output_dir,
        "max_steps": args.steps,
        "per_device_train_batch_size": args.micro_batch,
        "gradient_accumulation_steps": args.global_batch // args.micro_batch,
        "learning_rate": args.lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "seed": args.seed,
        "data_seed": args.seed,
        "train_sampling_strategy": "sequential",  # file order, as sisu with data.shuffle=false
        "use_cpu": True,
        "bf16": False,  # fp32 (TRL's configs default to bf16)
        "fp16": False,
        "activation_checkpointing": False,  # TRL's configs default gradient_checkpointing (its old name) to True
        "max_length": args.max_length,
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    if args.task == "sft":
        from trl import SFTConfig as Config
        from trl import SFTTrainer as Trainer

        common.update(
            packing=False,
            padding_free=False,
            completion_only_loss=False,  # loss on the full sequence, like sisu's default
            assistant_only_loss=False,
        )
        dataset = Dataset.from_list(read_rows(args.data, ("messages",)))
    else:
        from trl import DPOConfig as Config
        from trl import DPOTrainer as Trainer

        common.update(
            beta=args.beta,
            loss_type=["sigmoid"],
            precompute_ref_log_probs=False,  # a live reference model
            padding_free=False,
        )
        dataset = Dataset.from_list(read_rows(args.data, ("prompt", "chosen", "rejected")))
    for item in args.arg:
        key, _, value = item.partition("=")
        common[key] = parse_value(value)
    config = Config(**common)

    metrics_path = Path(args.metrics)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_file = metrics_path.open("w", encoding="utf-8")
    state: dict[str, Any] = {"real_tokens": 0, "pairs": 0, "last_end": None, "pending": None}

    class CountingTrainer(Trainer):  # type: ignore[misc, valid-type]
        """Counts the real (non-padding) tokens and the pairs of every micro-batch."""

        def training_step(self, model: Any, inputs: dict[str, Any], *rest: Any, **kwargs: Any) -> Any:
            mask = inputs.get("attention_mask")
            if mask is not None:
                state["real_tokens"] += int(mask.sum())
            else:  # padding-free batches: every position is a real token
                state["real_tokens"] += int(inputs["input_ids"].numel())
            if args.task == "dpo":
                state["pairs"] += int(inputs["input_ids"].shape[0]) // 2
            return super().training_step(model, inputs, *rest, **kwargs)

    class StepClock(TrainerCallback):
        def on_train_begin(self, *_: Any, **__: Any) -> None:
            state["last_end"] = time.perf_counter()

        def on_step_end(self, _args: Any, trainer_state: Any, *_: Any, **__: Any) -> None:
            now = time.perf_counter()
            record = {
                "step": trainer_state.global_step,
                "step_seconds": now - state["last_end"],
                "real_tokens": state["real_tokens"],
                "peak_rss_bytes": peak_rss_bytes(),
            }
            if args.task == "dpo":
                record["num_pairs"] = state["pairs"]
            state.update(real_tokens=0, pairs=0, pending=record)
            state["last_end"] = now

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict | None = None, **__: Any) -> None:
            # the step's loss is logged right after on_step_end (logging_steps=1)
            record = state["pending"]
            if record is not None and logs and "loss" in logs:
                record["loss"] = float(logs["loss"])
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                state["pending"] = None
                print(
                    f"step {record['step']}: loss {record['loss']:.4f}, {record['step_seconds']:.2f} s, "
                    f"{record['real_tokens']} real tokens",
                    flush=True,
                )

    trainer = CountingTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[StepClock()]
    )
    resolved = {
        key: getattr(config, key, None)
        for key in sorted(
            set(common)
            | {"gradient_checkpointing", "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "torch_compile"}
        )
    }
    print("trl config: " + json.dumps(resolved, default=str), flush=True)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    trainer.train()
    metrics_file.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))
