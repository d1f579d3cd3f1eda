"""What tests share (importable from every test file: `tests/` is on pytest's pythonpath, setup.cfg): where the
repository is, how a job runs in a subprocess (one process, or torchrun), and reading what it wrote.

    from harness import REPO, read_metrics, run_job
    proc = run_job("launch/sft.py", "recipes/test/tiny_sft.yaml", f"output_dir={out}", nproc=2)

conftest.py offers the same as fixtures (`run_job`, `read_metrics`, `repo`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
# torchrun's variables: a job started from a test must never inherit those of the test process
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


def job_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a job subprocess: this one's, offline, without torchrun's variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(extra or {})
    return env


def launcher(nproc: int = 1) -> list[str]:
    """The command that starts a job script: python, or torchrun on one machine for several processes."""
    if nproc <= 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]


def run_job(
    script: str,
    config: str | None,
    *overrides: str,
    nproc: int = 1,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """`script` (e.g. launch/sft.py) with `--config config` and key=value `overrides`, from the repository root;
    with `check`, a failure shows the end of the job's output."""
    args = ["--config", config] if config is not None else []
    proc = subprocess.run(
        [*launcher(nproc), script, *args, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=job_env(env),
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def read_metrics(out: str | os.PathLike) -> list[dict]:
    """The rows of a training run's metrics.jsonl."""
    return read_jsonl(Path(out) / "metrics.jsonl")


def pack_examples(examples, *, max_len: int) -> list:
    """Packed rows of SFT examples in best-fit-decreasing order of creation, the rows data/batching.py builds
    before it orders them by fill."""
    from data.packing import best_fit_decreasing, pack_row

    bins = best_fit_decreasing([len(e.input_ids) for e in examples], capacity=max_len)
    return [pack_row([examples[i] for i in members]) for members in bins]


# Tiny random-init architectures for in-process tests (vocabulary 100).
TINY_LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}  # fmt: skip
TINY_BLOOM = {"model_type": "bloom", "hidden_size": 64, "n_head": 4, "n_layer": 2, "vocab_size": 100}


def tiny_model(spec: Mapping | None = None, *, attn_implementation: str = "auto", seed: int = 0):
    """A random-init model of `spec` (TINY_LLAMA by default), seeded, on the CPU, through sisu's own builder."""
    import torch

    from runtime.model import build_model
    from runtime.settings import ModelConfig

    torch.manual_seed(seed)
    cfg = ModelConfig(init_config=dict(spec or TINY_LLAMA), attn_implementation=attn_implementation)
    return build_model(cfg, device="cpu")
