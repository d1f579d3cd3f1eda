"""Settings every job shares: the model to load and the process group (training, eval and translation)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from data.config import option
from data.errors import ConfigError


@dataclasses.dataclass
class ModelConfig:
    """Which causal LM to load, or how to build one with random weights."""

    path: str | None = option(
        None, help="Local directory or hub id of a transformers causal LM (AutoModelForCausalLM)."
    )
    init_config: dict[str, Any] | str | None = option(
        None,
        help="Build a randomly initialised model instead of loading weights: a mapping of config fields "
        "(must include model_type, e.g. llama) or a path to a config.json. Used by tests and benchmarks.",
    )
    tokenizer: str | None = option(None, help="Tokenizer path or id; null = model.path.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", help="Storage dtype of the loaded weights; auto = float32 master weights (recommended)."
    )
    attn_implementation: str = option(
        "auto",
        help="auto: chosen per architecture (SDPA for rotary models such as Llama; for ALiBi models such as "
        "BLOOM/Poro-34B, sisu's SDPA with one additive ALiBi + mask bias, see runtime/attention.py); sdpa: the "
        "same; eager: transformers' eager attention (packed batches then get an additive mask); any other "
        "transformers implementation (flash_attention_2, flex_attention) is passed through for rotary models.",
    )
    trust_remote_code: bool = option(False, help="Allow custom modelling code from the model directory.")

    def check(self) -> None:
        if self.path is None and self.init_config is None:
            raise ConfigError("model: set model.path (weights to load) or model.init_config (random init)")


@dataclasses.dataclass
class DistributedConfig:
    """Process group settings."""

    backend: Literal["auto", "nccl", "gloo", "cuda:gloo"] = option(
        "auto",
        help="auto: nccl on GPU (RCCL on ROCm), gloo on CPU. cuda:gloo: gloo serving CUDA tensors only, several "
        "ranks per GPU allowed (a test backend: like NCCL it fails on any CPU tensor handed to a collective).",
    )
    timeout_minutes: float = option(30.0, help="Timeout of collective operations.")
