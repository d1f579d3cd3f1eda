"""The architectures the planner knows: their shapes, parameter counts and per-token activation sizes.

A model enters as its transformers config (hidden size, layers, heads, kv heads, intermediate size, vocabulary,
tied embeddings), read from `model.init_config`, a local config.json, the hub cache, or the table below when the
config is not reachable offline. docs/memory.md explains every count with worked numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from data.errors import SisuError

# transformers config fields of architectures the planner knows without network access.
#  - poro-34b: LumiOpen/Poro-34B config.json (BloomForCausalLM: hidden_size 7168, n_layer 54, n_head 56,
#    vocab_size 128000; tie_word_embeddings is not set, so BLOOM's default, tied, applies; ALiBi, no rotary;
#    MLP 4 x hidden) and Luukkonen et al. 2024, "Poro 34B and the blessing of multilinguality" (arXiv:2404.01856):
#    34.2B parameters, sequence length 2048. Our formula gives 34,216,949,760.
#  - llama-3-8b / llama-3-70b: meta-llama/Meta-Llama-3-{8B,70B} config.json (vocab 128256, untied, GQA with 8
#    kv heads): 8,030,261,248 and 70,553,706,496 parameters.
#  - smollm2-135m: HuggingFaceTB/SmolLM2-135M(-Instruct) config.json (the demo model): 134,515,008 parameters.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "poro-34b": {
        "model_type": "bloom",
        "hidden_size": 7168,
        "n_layer": 54,
        "n_head": 56,
        "vocab_size": 128000,
        "tie_word_embeddings": True,
    },
    "llama-3-8b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": False,
    },
    "llama-3-70b": {
        "model_type": "llama",
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": False,
    },
    "smollm2-135m": {
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "vocab_size": 49152,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
    },
}

# Model types whose decoder block is a Llama block (RMSNorm, rotary, gated SiLU MLP, optional GQA).
LLAMA_LIKE = {"llama", "mistral", "qwen2"}


class PlanError(SisuError):
    """A one-line user error of the planner (unknown architecture, unreadable config, bad settings)."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, as far as memory and FLOPs are concerned."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    approximate: bool = False  # a model type outside LLAMA_LIKE/bloom, counted as a Llama block

    @property
    def family(self) -> str:
        return "bloom" if self.model_type == "bloom" else "llama"

    # -- parameters ------------------------------------------------------------------------------------------

    def block_params(self) -> int:
        """Parameters of one decoder block.

        Llama: q (h x a·d), k and v (h x k·d each), o (a·d x h), biases where configured, gated MLP 3·h·I,
        two RMSNorm weights 2h. BLOOM: fused qkv 3h² + 3h, dense h² + h, MLP h·I + I + I·h + h, two LayerNorms
        (weight and bias) 4h; with I = 4h that is 12h² + 13h."""
        h, d, I = self.hidden, self.head_dim, self.intermediate  # noqa: E741
        if self.family == "bloom":
            return 3 * h * h + 3 * h + h * h + h + h * I + I + I * h + h + 4 * h
        q, kv = self.heads * d, self.kv_heads * d
        attention = h * q + 2 * h * kv + q * h
        if self.qkv_bias:
            attention += q + 2 * kv
        if self.o_bias:
            attention += h
        mlp = 3 * h * I + ((2 * I + h) if self.mlp_bias else 0)
        return attention + mlp + 2 * h

    def root_params(self) -> int:
        """Parameters outside the blocks (sisu's FSDP root group): input embedding, final norm, untied LM head;
        BLOOM also has a LayerNorm right after the embedding."""
        h = self.hidden
        norms = 4 * h if self.family == "bloom" else h
        return self.vocab * h * (1 if self.tied else 2) + norms

    def total_params(self) -> int:
        return self.layers * self.block_params() + self.root_params()

    def flops_params(self) -> int:
        """N of the 6N rule: every parameter that takes part in a matmul per token — the blocks, the final norm
        and the LM head (V·h, also when it is tied to the embedding) — but not the input embedding lookup."""
        return self.total_params() - self.vocab * self.hidden + (self.vocab * self.hidden if self.tied else 0)

    # -- activations -----------------------------------------------------------------------------------------

    def layer_activation_bytes(
        self, *, compute_bytes: int, seq_len: int, attn_implementation: str, masked: bool
    ) -> float:
        """Bytes autograd keeps per token for one decoder layer (transformers' modelling code, training mode,
        dropout 0, no activation checkpointing). c = compute bytes.

        Llama block:
          - each RMSNorm: its fp32 input (4h; HF upcasts), the normalised value and the output (c·h each):
            4h + 2c·h, twice;
          - attention with SDPA (flash/memory-efficient kernels): rotated q (c·a·d), k and v (c·k·d each; c·a·d
            when a padding mask is passed, because transformers then repeats the kv heads before SDPA), the
            output (c·a·d, which o_proj saves as its input) and the fp32 log-sum-exp (4a); with a padding mask
            SDPA also keeps the mask in the compute dtype, per layer (c·s; measured on CPU, where each layer
            saves its own copy — conservative where a kernel shares it);
          - attention eager: q, repeated k and v, the merged output (c·(3·a·d + h)), the fp32 softmax (4·a·s) and,
            in bf16, its cast (c·a·s);
          - gated MLP: gate and up outputs, SiLU output and the product (4·c·I);
          - two fp32 rsqrt statistics (8 bytes).
        BLOOM block: each LayerNorm keeps input and output (2c·h) and two statistics (2c); GELU MLP keeps its
          input and output (2c·I); attention
          - sisu's ALiBi SDPA (`alibi_sdpa`, the default): the fused qkv output (3c·h), the SDPA output (c·h; the
            kernel lays it out so that the dense layer's input is a view of it), the fp32 log-sum-exp (4a); the
            additive bias is one tensor shared by all layers (`shared_activation_bytes`);
          - eager: q, k, v and the merged context (4c·h); fp32 softmax 4·a·s plus its cast c·a·s in bf16.
        Per sequence, the eager attention-score terms are the 4·a·s² (+ c·a·s²) of the usual eager estimate.
        """
        c, h, a, d, s, I = compute_bytes, self.hidden, self.heads, self.head_dim, seq_len, self.intermediate  # noqa: E741
        cast = c * a * s if c < 4 else 0
        if self.family == "bloom":
            if attn_implementation == "alibi_sdpa":
                return 4 * c * h + 4 * c + 4 * c * h + 4 * a + 2 * c * I
            return 4 * c * h + 4 * c + 4 * c * h + 4 * a * s + cast + 2 * c * I
        norms = 2 * (4 * h + 2 * c * h)
        q = a * d
        if attn_implementation == "eager":
            attention = c * (3 * q + h) + 4 * a * s + cast
        else:
            kv = q if (masked and self.kv_heads < self.heads) else self.kv_heads * d
            attention = c * (2 * q + 2 * kv) + 4 * a + (c * s if masked else 0)
        return norms + attention + 4 * c * I + 8

    def shared_activation_bytes(self, *, compute_bytes: int, seq_len: int, attn_implementation: str) -> float:
        """Bytes per token kept once for all layers: sisu's ALiBi SDPA bias [B, a, s, s] in the compute dtype (the
        key dimension allocated in multiples of 16), c·a·ceil16(s); nothing for other attentions."""
        if self.family != "bloom" or attn_implementation != "alibi_sdpa":
            return 0.0
        return compute_bytes * self.heads * (-(-seq_len // 16) * 16)

    def head_activation_bytes(self, *, compute_bytes: int) -> float:
        """Bytes per token kept outside the blocks: the token ids (8), the final norm (Llama: 4h + 2c·h + 4;
        BLOOM's LayerNorm keeps its input and output, 2c·h + 2c) and BLOOM's embedding LayerNorm (c·h + 2c: its
        output is the first block's input, counted there)."""
        c, h = compute_bytes, self.hidden
        if self.family == "bloom":
            return 3 * c * h + 4 * c + 8
        return 4 * h + 2 * c * h + 4 + 8


def architecture_from_config(config: Any) -> Architecture:
    """An `Architecture` from a transformers config object or a mapping of its fields (with model_type)."""
    if isinstance(config, Architecture):
        return config
    if isinstance(config, Mapping):
        from transformers import AutoConfig

        fields = dict(config)
        model_type = fields.pop("model_type", None)
        if model_type is None:
            raise PlanError("the model config needs model_type (e.g. llama)")
        try:
            config = AutoConfig.for_model(model_type, **fields)
        except (ValueError, KeyError) as exc:
            raise PlanError(f"model_type {model_type!r}: {str(exc).splitlines()[0]}") from None
    model_type = getattr(config, "model_type", "")
    hidden = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    vocab = getattr(config, "vocab_size", None)
    if not all(isinstance(v, int) and v > 0 for v in (hidden, layers, heads, vocab)):
        raise PlanError(
            f"model_type {model_type!r}: the config lacks hidden_size, num_hidden_layers, num_attention_heads or "
            "vocab_size; pass --arch NAME"
        )
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    if model_type == "bloom":
        intermediate = 4 * hidden
    else:
        intermediate = getattr(config, "intermediate_size", None)
        if not isinstance(intermediate, int):
            raise PlanError(
                f"model_type {model_type!r}: the config has no intermediate_size; pass --arch NAME"
            )
    attention_bias = bool(getattr(config, "attention_bias", False))
    return Architecture(
        model_type=model_type,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=vocab,
        tied=bool(getattr(config, "tie_word_embeddings", True)),
        qkv_bias=attention_bias or model_type == "qwen2",
        o_bias=attention_bias and model_type != "qwen2",
        mlp_bias=bool(getattr(config, "mlp_bias", False)),
        approximate=model_type not in LLAMA_LIKE and model_type != "bloom",
    )


def known_architecture(name: str) -> Architecture:
    key = _normalise(name)
    for arch_name, fields in ARCHITECTURES.items():
        if _normalise(arch_name) == key:
            return architecture_from_config(fields)
    raise PlanError(f"unknown --arch {name!r}; known: {', '.join(ARCHITECTURES)}")


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def resolve_architecture(model_cfg: Any, *, arch: str | None = None) -> tuple[Architecture, str]:
    """(architecture, where it came from) for a `ModelConfig`: --arch, init_config, a local config.json, the hub
    cache, or the table entry whose name matches the model path (e.g. LumiOpen/Poro-34B -> poro-34b)."""
    if arch is not None:
        return known_architecture(arch), f"architecture table ({arch})"
    if model_cfg.init_config is not None:
        spec = model_cfg.init_config
        if isinstance(spec, str):
            path = Path(spec)
            if not path.is_file():
                raise PlanError(f"model.init_config {spec!r}: no such file")
            spec = json.loads(path.read_text(encoding="utf-8"))
        return architecture_from_config(spec), "model.init_config"
    path = model_cfg.path
    if path is None:
        raise PlanError("the recipe has neither model.path nor model.init_config; pass --arch NAME")
    local = Path(os.path.expanduser(path))
    if (local / "config.json").is_file():
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(local), trust_remote_code=model_cfg.trust_remote_code)
        return architecture_from_config(config), f"{local / 'config.json'}"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json") if path.count("/") == 1 else None
    except Exception:  # noqa: BLE001 - any hub-cache problem just means "not cached"
        cached = None
    if isinstance(cached, str):
        fields = json.loads(Path(cached).read_text(encoding="utf-8"))
        return architecture_from_config(fields), f"hub cache ({path})"
    key = _normalise(path.rstrip("/").split("/")[-1])
    for arch_name, fields in ARCHITECTURES.items():
        if _normalise(arch_name) and key.startswith(_normalise(arch_name)):
            return architecture_from_config(fields), f"architecture table ({arch_name}, matched from {path})"
    raise PlanError(
        f"cannot read the config of {path!r} offline (not a local directory, not in the hub cache); "
        f"pass --arch NAME ({', '.join(ARCHITECTURES)})"
    )
