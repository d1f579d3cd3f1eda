"""The CPU runtime baseline: the peak RSS of a trainer process apart from its model, assumed or measured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from planner.architectures import PlanError

# Peak RSS of the trainer's runtime without a model, measured on this project's CPU environment (torch 2.13 CPU,
# transformers 5.24, Python 3.11): launch imports, the llama modelling module, a gloo process group, the tokenizer,
# TensorBoard and a first FSDP2 forward/backward of a negligible model: 0.36 GiB. Override with --runtime-gib or
# measure with `measure_runtime_baseline` (the test does).
CPU_RUNTIME_GIB = 0.36


_BASELINE_SCRIPT = r"""
import importlib, os, resource, sys
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[3], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
sys.path.insert(0, os.getcwd())
import trainer.sft, trainer.dpo  # what launch/sft.py and launch/dpo.py import
import torch, torch.distributed as dist
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
model_type, tokenizer = sys.argv[1], sys.argv[2]
if tokenizer != "-":
    AutoTokenizer.from_pretrained(tokenizer)
if sys.argv[4] == "1":
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401
dist.init_process_group("gloo")
from runtime.parallel import shard_model
fields = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=1, vocab_size=16)
if model_type == "bloom":
    fields = dict(hidden_size=8, n_layer=1, n_head=1, vocab_size=16)
model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **fields))
shard_model(model, device=torch.device("cpu"))
model(input_ids=torch.zeros(1, 8, dtype=torch.long)).logits.sum().backward()
dist.destroy_process_group()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))
"""


# Linux folds the memory of the process that spawns a child into the child's ru_maxrss (the child starts in, or
# as a copy of, its parent's address space before exec), so a child started by a large process (pytest, a planner
# that imported transformers) reports at least its parent's RSS. Starting it through a bare interpreter avoids that.
SPAWN_CLEAN = (sys.executable, "-S", "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))")


def measure_runtime_baseline(
    *,
    model_type: str = "llama",
    tokenizer: str | None = None,
    tensorboard: bool = True,
    cwd: str | None = None,
) -> int:
    """Peak RSS (bytes) of a fresh process doing what the trainer does apart from the model's size: the launch
    imports, the modelling module of `model_type`, the tokenizer, TensorBoard, a gloo process group and one FSDP2
    forward/backward of a negligible model. This is the `runtime` term of the CPU plan."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo = cwd or str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(
        [
            *SPAWN_CLEAN,
            sys.executable,
            "-c",
            _BASELINE_SCRIPT,
            model_type,
            tokenizer or "-",
            str(port),
            "1" if tensorboard else "0",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise PlanError(
            f"runtime baseline measurement failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    return int(proc.stdout.strip().splitlines()[-1])
