"""Exports users can serve (dtype, KV cache, ids) and checkpoints that remember their chat template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from runtime.config import load_config
from trainer.checkpoint import check_same_template, export_dtype
from trainer.jobs import SFTConfig


def _cfg(repo, *overrides):
    return load_config(SFTConfig, str(repo / "recipes/test/tiny_sft.yaml"), ["output_dir=x", *overrides])


def test_export_dtype_defaults_to_the_compute_dtype(repo):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)  # only the device type is read: no GPU needed
    assert export_dtype(_cfg(repo), cpu) == torch.float32
    assert export_dtype(_cfg(repo), gpu) == torch.bfloat16  # mixed_precision auto: bf16 compute on GPU
    assert export_dtype(_cfg(repo, "train.mixed_precision=fp32"), gpu) == torch.float32
    assert export_dtype(_cfg(repo, "train.mixed_precision=bf16"), cpu) == torch.bfloat16
    assert export_dtype(_cfg(repo, "checkpoint.export_dtype=float16"), gpu) == torch.float16
    assert (
        export_dtype(_cfg(repo, "model.dtype=bfloat16", "train.mixed_precision=fp32"), cpu) == torch.bfloat16
    )


def test_bf16_export_is_bf16_on_disk_and_in_its_config(repo, tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [
            sys.executable,
            "launch/sft.py",
            "--config",
            "recipes/test/tiny_sft.yaml",
            f"output_dir={out}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "train.max_steps=1",
            "checkpoint.export_dtype=bfloat16",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = out / "final"
    with safe_open(str(final / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.bfloat16}
    config = json.loads((final / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and config["use_cache"] is True
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(final), dtype="auto")
    assert model.dtype == torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(str(final))
    assert (
        model.config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    )
    out = model.generate(
        **tokenizer("Moi", return_tensors="pt"),
        max_new_tokens=3,
        do_sample=False,
        return_dict_in_generate=True,
    )
    assert out.past_key_values is not None  # the exported config generates with its KV cache


def test_resume_refuses_a_checkpoint_of_another_template():
    saved = {
        "chat_template": {"name": "chatml", "source": "A", "end_of_turn": "<|im_end|>", "added_tokens": {}}
    }
    same = {"name": "tokenizer", "source": "A", "end_of_turn": "<|im_end|>", "added_tokens": {}}
    check_same_template(saved, same, path=Path("ckpt"))
    check_same_template({}, same, path=Path("ckpt"))  # checkpoints from before sisu recorded the template
    with pytest.raises(ValueError, match="ckpt was trained with a different chat template .*resume=none"):
        check_same_template(saved, {**same, "source": "B"}, path=Path("ckpt"))
    with pytest.raises(ValueError, match="a different set of tokens added for the template"):
        check_same_template(saved, {**same, "added_tokens": {"<|im_end|>": 259}}, path=Path("ckpt"))
