"""Per-device memory and throughput of a training run under sisu's FSDP2 setup, from arithmetic alone.

Nothing is instantiated: the model enters as its transformers config (hidden size, layers, heads, kv heads,
intermediate size, vocabulary, tied embeddings) — read from `model.init_config`, a local config.json, or the
architecture table below when the config is not reachable offline — and the run as its settings (world size,
micro batch, sequence length, precision, activation checkpointing, DPO reference mode, loss chunking).
`launch/plan.py` is the command line; docs/memory.md explains every formula with worked numbers.

Notation: N parameters, W ranks (FSDP2 shards over all of them), b micro batch, s sequence length,
r = 1 row per sample for SFT, 2 for DPO (chosen and rejected), T = r·b·s tokens per micro-batch, h hidden size,
L layers, a heads, k kv heads, d head dim, I intermediate size, V vocabulary, c bytes of the compute dtype
(2 for bf16, 4 for fp32), p bytes of the stored (master) dtype (4 with `model.dtype: auto`).

**Model state per device** (sisu's `trainer/parallel.py`: one FSDP2 group per decoder block plus the root group,
which holds the embeddings, the final norm and the LM head):

- parameters: the sharded masters, p·N/W; plus the gathered working copies in the compute dtype: the root group
  (c·X_root, kept gathered from forward to the end of backward because training reshards it only then) and two
  blocks (c·X_block each: the one computing and the one being prefetched);
- gradients: sharded, p·N/W (FSDP2 keeps them in the parameter dtype); plus, while backward runs, the unsharded
  gradient of the root (c·X_root, it accumulates from the LM head to the embedding) and the reduce-scatter
  buffers of the group being reduced (see `reduce_scatter_bytes`);
- AdamW: exp_avg and exp_avg_sq, 2·p·N/W; the non-fused CPU implementation also makes two temporaries of the
  largest parameter shard during `step()` (the fused GPU kernel none);
- DPO reference (`reference.mode: live`): its own masters p·N_ref/W (frozen, no gradients or optimizer state) plus,
  during its forward, its gathered root and two blocks; `precompute`: nothing during training (it is freed after a
  pass over the data that happens before the optimizer exists; reported separately).

**Activations** (bytes per token per decoder layer, counted from the tensors autograd saves in the transformers
modelling code, checked in tests/trainer/test_memory_plan.py with saved-tensor hooks): see
`layer_activation_bytes`. Without checkpointing all L layers keep theirs; with checkpointing each layer keeps only
its input (c·h per token) and one layer's full set exists again during its recomputation. Backward needs one
layer's worth of gradient temporaries on top (an estimate, not checked on a GPU).

**Logits** (the full-vocabulary path, `train.loss_chunk_size: null`): 12·V bytes per token at the loss — the
logits, their fp32 copy or log-softmax, and the gradient (three fp32 [T, V] tensors; the bf16 logits and copies
fit in the same budget) — plus c·V for the reference's logits in live DPO. With chunking (`loss_chunk_size: C`)
only a chunk exists at a time: about 12·min(C, T)·V bytes, but its backward accumulates the LM head's gradient in
fp32 (4·V·h) and makes a V x h matmul result per chunk (plus its fp32 cast in bf16): 10·V·h bytes in bf16, 8·V·h
in fp32; the selected hidden rows are kept too (c·h·T).

**Peak**: the largest of four moments of a step — the start of backward (all activations, logits, root gradient),
the reference forward (live DPO), the end of backward (all sharded gradients, the root's reduce-scatter buffers)
and the optimizer step (all state plus its temporaries). On CPU the trainer runs one fp32 process per rank; its
peak RSS adds the Python/torch runtime (`CPU_RUNTIME_GIB`, or measured with `measure_runtime_baseline`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainer import devices

GiB = 2**30

# Peak RSS of the trainer's runtime without a model, measured on this project's CPU environment (torch 2.13 CPU,
# transformers 5.24, Python 3.11): launch imports, the llama modelling module, a gloo process group, the tokenizer,
# TensorBoard and a first FSDP2 forward/backward of a negligible model: 0.36 GiB. Override with --runtime-gib or
# measure with `measure_runtime_baseline` (the test does).
CPU_RUNTIME_GIB = 0.36

# ------------------------------------------------------------------------------------------------------------
# Architectures
# ------------------------------------------------------------------------------------------------------------

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


def effective_attention(model_type: str, requested: str) -> str:
    """The attention a run uses (trainer/attention.py): alibi_sdpa for BLOOM by default, sdpa for rotary models,
    or what `model.attn_implementation` names."""
    from trainer.attention import ALIBI_SDPA, resolve_attention

    implementation, alibi_sdpa = resolve_attention(model_type, requested)
    return ALIBI_SDPA if alibi_sdpa else implementation


class PlanError(ValueError):
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


# ------------------------------------------------------------------------------------------------------------
# FLOPs
# ------------------------------------------------------------------------------------------------------------


def model_flops_per_token(config: Any, seq_len: int) -> float:
    """Model FLOPs of one training token (forward and backward), the PaLM accounting (Chowdhery et al. 2022,
    appendix B; the same 6N rule as Kaplan et al. and Chinchilla):

        6·N + 12·L·(a·d)·s

    N counts the parameters that enter a matmul per token: all blocks, the final norm and the LM head (V·h, also
    when tied), but not the input-embedding lookup (`Architecture.flops_params`). 6 = 2 (multiply-add) x 3
    (forward, and backward for inputs and weights). The second term is attention's QK^T and AV products over a
    context of s tokens (2·2·L·a·d·s forward, x3 with backward), counted as if non-causal, as PaLM does.
    Activation-checkpointing recomputation is not counted (these are model FLOPs, not hardware FLOPs).

    `config`: a transformers config, a mapping with model_type, or an `Architecture`; `seq_len`: the attention
    context of the tokens being counted (the padded row length of the micro-batch). Lives in
    trainer/memory_plan.py; the trainer's MFU metric imports it from here.
    """
    arch = architecture_from_config(config)
    return 6.0 * arch.flops_params() + 12.0 * arch.layers * arch.heads * arch.head_dim * seq_len


def forward_flops_per_token(config: Any, seq_len: int) -> float:
    """A third of `model_flops_per_token`: one forward pass (the DPO reference)."""
    return model_flops_per_token(config, seq_len) / 3.0


# ------------------------------------------------------------------------------------------------------------
# The memory model
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What the memory depends on besides the architecture."""

    world_size: int = 1
    device: str = "cpu"
    micro_batch: int = 1
    seq_len: int = 2048
    rows_per_sample: int = 1  # 2 for DPO
    mixed_precision: str = "auto"  # auto | bf16 | fp32 (train.mixed_precision)
    model_dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (model.dtype)
    activation_checkpointing: bool = False
    attn_implementation: str = "auto"  # model.attn_implementation (see effective_attention)
    loss_chunk_size: int | None = None
    grad_accum: int = 1
    reference: str | None = None  # None (SFT) | live | precompute
    fused_optimizer: bool | None = None  # None: fused on GPU, not on CPU (trainer/optim.py)
    cpu_offload: bool = False
    padded: bool | None = None  # an attention mask is passed; None: whenever a micro-batch has several rows

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def compute_bytes(self) -> int:
        bf16 = self.mixed_precision == "bf16" or (self.mixed_precision == "auto" and not self.on_cpu)
        return 2 if bf16 or self.param_bytes == 2 else 4

    @property
    def param_bytes(self) -> int:
        return 2 if self.model_dtype in ("bfloat16", "float16") else 4

    @property
    def fused(self) -> bool:
        return (not self.on_cpu) if self.fused_optimizer is None else self.fused_optimizer

    @property
    def rows(self) -> int:
        return self.rows_per_sample * self.micro_batch

    @property
    def tokens(self) -> int:
        return self.rows * self.seq_len

    @property
    def masked(self) -> bool:
        return self.rows > 1 if self.padded is None else self.padded


def reduce_scatter_bytes(numel: int, *, grad_bytes: int, world_size: int) -> int:
    """Transient bytes of FSDP2's gradient reduction of one group of `numel` parameters (torch 2.13
    `foreach_reduce`), on top of the sharded gradient it produces.

    The unsharded gradient (grad_bytes per parameter) is copied into an fp32 reduce-scatter input (4 bytes) and
    lives until the reduction is done; the output (4/W) becomes the sharded gradient, counted with the gradients.
    With one rank the "reduce-scatter" is `output.copy_(input / divide_factor)` (sisu sets the factor), whose
    quotient is one more temporary of the input's size: (g + 4 + 4) bytes per parameter for W = 1, (g + 4)
    otherwise."""
    return numel * (grad_bytes + 4 + (4 if world_size == 1 else 0))


@dataclasses.dataclass
class MemoryPlan:
    """Per-device bytes of each component and of each moment of a step (see the module docstring)."""

    settings: RunSettings | GenerationSettings
    components: dict[str, float]
    moments: dict[str, float]
    runtime: float  # CPU: the process's runtime baseline (counted in RSS); GPU: 0 (reserved separately)

    @property
    def peak(self) -> float:
        return max(self.moments.values()) + self.runtime

    @property
    def peak_moment(self) -> str:
        return max(self.moments, key=self.moments.__getitem__)


def plan_memory(
    arch: Architecture,
    settings: RunSettings,
    *,
    reference_arch: Architecture | None = None,
    runtime_bytes: float | None = None,
) -> MemoryPlan:
    """Per-device memory of one training step. Every term is documented in the module docstring and
    docs/memory.md; the returned moments are live bytes (what CUDA's max_memory_allocated reports), plus on CPU
    the runtime baseline (RSS)."""
    s = settings
    if s.world_size < 1 or s.micro_batch < 1 or s.seq_len < 1:
        raise PlanError("world size, micro batch and sequence length must be >= 1")
    W, p, c, T = s.world_size, s.param_bytes, s.compute_bytes, s.tokens
    n = arch.total_params()
    x_root, x_block = arch.root_params(), arch.block_params()
    ref = reference_arch or arch
    live_ref = s.reference == "live"

    # sharded state (to the host with cpu_offload)
    params = p * n / W
    grads = p * n / W
    optimizer = 2 * p * n / W
    reference = p * ref.total_params() / W if live_ref else 0.0
    offloaded = params + grads + optimizer if s.cpu_offload else 0.0
    if s.cpu_offload:
        params = grads = optimizer = 0.0

    # gathered working copies (W = 1 still allocates them: FSDP2 copies into its all-gather output)
    root_gathered = c * x_root
    blocks_gathered = 2 * c * x_block
    ref_gathered = c * ref.root_params() + 2 * c * ref.block_params() if live_ref else 0.0
    root_grad = c * x_root  # unsharded root gradient, from the LM head's backward to the end of backward
    # the root's reduction at the end of backward (includes its unsharded gradient)
    root_reduce = reduce_scatter_bytes(x_root, grad_bytes=c, world_size=W)
    block_reduce = reduce_scatter_bytes(x_block, grad_bytes=c, world_size=W)

    # activations
    attention = effective_attention(arch.model_type, s.attn_implementation)
    per_layer = arch.layer_activation_bytes(
        compute_bytes=c, seq_len=s.seq_len, attn_implementation=attention, masked=s.masked
    )
    layer = per_layer * T
    # outside the layers: the head, and what all layers share (the ALiBi bias), kept from forward to backward
    head = (
        arch.head_activation_bytes(compute_bytes=c)
        + arch.shared_activation_bytes(compute_bytes=c, seq_len=s.seq_len, attn_implementation=attention)
    ) * T
    inputs_only = arch.layers * c * arch.hidden * T + head  # what checkpointing keeps through the forward
    activations_full = arch.layers * layer + head
    activations_ckpt = inputs_only + layer  # + the block being recomputed in backward
    # kept from the forward into the backward; in the backward, one layer's gradient temporaries (about its own
    # activations) and its reduce-scatter, and with checkpointing the recomputed layer as well
    stored = inputs_only if s.activation_checkpointing else activations_full
    backward_layer = (2 if s.activation_checkpointing else 1) * layer + block_reduce

    # logits
    if s.loss_chunk_size is None:
        logits = 12.0 * arch.vocab * T
        ref_logits = (12.0 + c) * arch.vocab * T if live_ref else 0.0
    else:
        rows = min(s.loss_chunk_size, T)
        # fp32 accumulator of the LM head's gradient (4·V·h) plus each chunk's (V x h) matmul result and, in bf16,
        # its fp32 cast: 10·V·h bytes in bf16, 8·V·h in fp32 (losses/chunked.py, backward)
        head_grad = (10.0 if c < 4 else 8.0) * arch.vocab * arch.hidden
        logits = 12.0 * rows * arch.vocab + head_grad + c * arch.hidden * T
        ref_logits = 12.0 * rows * arch.vocab + c * arch.hidden * T if live_ref else 0.0

    accumulated = grads if s.grad_accum > 1 else 0.0
    state = params + optimizer + reference
    largest_param = max(
        arch.vocab * arch.hidden, arch.hidden * max(arch.intermediate, arch.heads * arch.head_dim)
    )
    optimizer_temps = 0.0 if s.fused or s.cpu_offload else 2 * p * largest_param / W

    moments = {
        "backward start": state
        + accumulated
        + root_gathered
        + blocks_gathered
        + stored
        + root_grad
        + max(logits, backward_layer),
        "backward end": state + grads + root_reduce,
        "optimizer step": state + grads + optimizer_temps,
    }
    if live_ref:
        moments["reference forward"] = (
            state + accumulated + root_gathered + blocks_gathered + stored + ref_gathered + ref_logits
        )
    components = {
        "parameters (sharded masters)": params,
        "parameters (gathered: root + 2 blocks)": root_gathered + blocks_gathered,
        "gradients (sharded)": grads,
        "gradients (unsharded root + reduce buffers)": root_grad + max(root_reduce, block_reduce),
        "optimizer states (AdamW)": optimizer,
        "reference model": reference + ref_gathered,
        "activations (no checkpointing)": activations_full,
        "activations (checkpointing)": activations_ckpt,
        "logits and loss": logits + ref_logits,
    }
    if s.cpu_offload:
        components["offloaded to host (params, grads, AdamW)"] = offloaded
    if runtime_bytes is None:
        runtime_bytes = CPU_RUNTIME_GIB * GiB if s.on_cpu else 0.0
    return MemoryPlan(settings=s, components=components, moments=moments, runtime=runtime_bytes)


def precompute_phase_bytes(
    arch: Architecture, settings: RunSettings, reference_arch: Architecture | None
) -> float:
    """DPO `reference.mode: precompute`: the pass over the data before training holds the policy's sharded
    masters, the reference's shards and its forward (gathered root and blocks, logits); no optimizer yet."""
    ref = reference_arch or arch
    s = settings
    c, W = s.compute_bytes, s.world_size
    logits = (
        (12.0 + c) * ref.vocab * s.tokens
        if s.loss_chunk_size is None
        else 12.0 * min(s.loss_chunk_size, s.tokens) * ref.vocab
    )
    return (
        s.param_bytes * (arch.total_params() + ref.total_params()) / W
        + c * ref.root_params()
        + 2 * c * ref.block_params()
        + logits
    )


def largest_micro_batch(
    arch: Architecture,
    settings: RunSettings,
    budget_bytes: float,
    *,
    reference_arch: Architecture | None = None,
    runtime_bytes: float | None = None,
    limit: int = 256,
) -> int:
    """The largest micro batch in 1..limit whose peak fits `budget_bytes` (0 when even 1 does not)."""
    best = 0
    for b in range(1, limit + 1):
        trial = dataclasses.replace(settings, micro_batch=b)
        peak = plan_memory(arch, trial, reference_arch=reference_arch, runtime_bytes=runtime_bytes).peak
        if peak > budget_bytes:
            break  # memory grows with b
        best = b
    return best


def memory_budget(device_gib: float, *, margin: float, overhead_gib: float) -> float:
    """Usable bytes: device memory x (1 - margin) - framework overhead (CUDA/HIP context, NCCL/RCCL buffers,
    allocator fragmentation — none of which max_memory_allocated counts)."""
    return device_gib * GiB * (1.0 - margin) - overhead_gib * GiB


# ------------------------------------------------------------------------------------------------------------
# Generation (eval, translate)
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """What the memory of a generation job (launch/eval.py, launch/translate.py) depends on."""

    world_size: int = 1
    device: str = "cpu"
    sharding: str = "replicate"  # replicate | fsdp
    batch_size: int = 8
    prompt_tokens: int = 1024  # the longest prompt's own tokens (batches are sorted longest first)
    new_tokens: int = 1280  # generation.max_new_tokens
    prefix_tokens: int = 0  # translation: the cached few-shot prefix, copied into every batch's cache
    model_dtype: str = "auto"
    attn_implementation: str = "auto"

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def compute_bytes(self) -> int:
        """bf16 on GPU (replicated models are cast, sharded ones compute in bf16), else the stored dtype."""
        if self.model_dtype in ("bfloat16", "float16") or (not self.on_cpu and self.model_dtype == "auto"):
            return 2
        return 4

    @property
    def context(self) -> int:
        return self.prefix_tokens + self.prompt_tokens + self.new_tokens


def plan_generation(
    arch: Architecture, s: GenerationSettings, *, runtime_bytes: float | None = None
) -> MemoryPlan:
    """Per-device memory of batched generation with the KV cache (eval/generate.py).

    weights: a full copy in the compute dtype (`replicate`), or the fp32 masters sharded over W ranks plus the
    gathered root and two blocks in the compute dtype (`fsdp`, all ranks in lockstep); KV cache: batch x (prefix +
    prompt + new tokens) x L x 2 (keys, values) x kv heads x head dim x c, at its largest at the last token;
    prefill: the longest batch's forward without gradients, one layer at a time: its hidden states and MLP
    (c·(5h + I) per token), its attention scores (eager: fp32 and compute-dtype copies, (4 + c)·a·q·kv;
    sisu's ALiBi SDPA: the bias, c·a·q·kv; rotary SDPA: none), a second copy of one layer's cache while the cache
    grows, and the last position's logits (fp32, twice).
    """
    if s.world_size < 1 or s.batch_size < 1:
        raise PlanError("world size and batch size must be >= 1")
    c, W, B = s.compute_bytes, s.world_size, s.batch_size
    n = arch.total_params()
    param_bytes = 2 if s.model_dtype in ("bfloat16", "float16") else 4
    if s.sharding == "fsdp":
        weights = param_bytes * n / W
        gathered = c * (arch.root_params() + 2 * arch.block_params())
    else:
        weights, gathered = c * n, 0.0
    kv_per_token = arch.layers * 2 * arch.kv_heads * arch.head_dim * c
    kv_cache = B * s.context * kv_per_token
    query, keys = s.prompt_tokens, s.prefix_tokens + s.prompt_tokens
    attention = effective_attention(arch.model_type, s.attn_implementation)
    if attention == "eager":
        scores = (4 + c) * arch.heads * query * keys * B
    elif attention == "alibi_sdpa":
        scores = c * arch.heads * query * (-(-keys // 16) * 16) * B
    else:
        scores = 0.0
    hidden = c * (5 * arch.hidden + arch.intermediate) * B * query
    cache_growth = kv_cache / arch.layers
    logits = 2 * 4 * arch.vocab * B
    prefill = hidden + scores + cache_growth + logits
    components = {
        "weights" + (" (sharded masters)" if s.sharding == "fsdp" else " (full copy)"): weights,
        "weights (gathered: root + 2 blocks)": gathered,
        "KV cache (at the last token)": kv_cache,
        "prefill and decoding transients": prefill,
    }
    moments = {"last token": weights + gathered + kv_cache + prefill}
    if runtime_bytes is None:
        runtime_bytes = CPU_RUNTIME_GIB * GiB if s.on_cpu else 0.0
    return MemoryPlan(settings=s, components=components, moments=moments, runtime=runtime_bytes)


# ------------------------------------------------------------------------------------------------------------
# Throughput
# ------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Throughput:
    # model FLOPs per token of a training step (the policy, plus the live reference's forward)
    flops_per_token: float
    tokens_per_second_per_device: float
    tokens_per_step: float
    steps_per_second: float
    seconds_per_epoch: float | None


def estimate_throughput(
    arch: Architecture,
    settings: RunSettings,
    *,
    peak_flops: float,
    mfu: float,
    global_batch: int,
    tokens_per_row: float,
    num_examples: int | None = None,
    reference_arch: Architecture | None = None,
) -> Throughput:
    """tokens/s/device = MFU x peak FLOP/s / FLOPs per token, with FLOPs per token = `model_flops_per_token`
    (+ the reference's forward, a third of its own, in live DPO). A step computes global_batch x rows x
    tokens_per_row tokens over all ranks (tokens_per_row = max_seq_len when the data is unknown: every row full
    length, an upper bound on the step time; the mean example length when it is counted: a lower bound, since
    micro-batches are padded to their longest row)."""
    flops = model_flops_per_token(arch, settings.seq_len)
    if settings.reference == "live":
        flops += forward_flops_per_token(reference_arch or arch, settings.seq_len)
    per_device = mfu * peak_flops / flops
    tokens_per_step = global_batch * settings.rows_per_sample * tokens_per_row
    steps_per_second = per_device * settings.world_size / tokens_per_step
    epoch = None
    if num_examples is not None and num_examples >= global_batch:
        epoch = (num_examples // global_batch) / steps_per_second
    return Throughput(flops, per_device, tokens_per_step, steps_per_second, epoch)


# ------------------------------------------------------------------------------------------------------------
# CPU runtime baseline
# ------------------------------------------------------------------------------------------------------------

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
from trainer.parallel import shard_model
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


# ------------------------------------------------------------------------------------------------------------
# From a recipe
# ------------------------------------------------------------------------------------------------------------


def settings_from_config(cfg: Any, *, job: str, world_size: int, device: str) -> RunSettings:
    """RunSettings of an SFTConfig or DPOConfig for `world_size` ranks of `device`."""
    train = cfg.train
    per_step = train.micro_batch_size * world_size
    reference = None
    if job == "dpo":
        mode = cfg.reference.mode
        reference = mode if mode != "auto" else ("precompute" if train.epochs > 1 else "live")
    return RunSettings(
        world_size=world_size,
        device=device,
        micro_batch=train.micro_batch_size,
        seq_len=train.max_seq_len,
        rows_per_sample=2 if job == "dpo" else 1,
        mixed_precision=train.mixed_precision,
        model_dtype=cfg.model.dtype,
        activation_checkpointing=train.activation_checkpointing,
        attn_implementation=cfg.model.attn_implementation,
        loss_chunk_size=getattr(train, "loss_chunk_size", None),
        grad_accum=max(1, train.global_batch_size // per_step),
        reference=reference,
        fused_optimizer=cfg.optim.fused,
        cpu_offload=train.cpu_offload,
    )


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def format_gib(value: float) -> str:
    return f"{value / GiB:8.2f} GiB"


def detect_job(raw: Mapping[str, Any]) -> str:
    """eval (benchmarks), translate (top-level sources and target_lang), dpo (a reference/dpo section or
    preference-format sources), else sft."""
    if "benchmarks" in raw:
        return "eval"
    if "target_lang" in raw or "sources" in raw:
        return "translate"
    if "reference" in raw or "dpo" in raw:
        return "dpo"
    sources = (raw.get("data") or {}).get("sources") or []
    if any(isinstance(src, Mapping) and src.get("format") in ("helpsteer2", "preference") for src in sources):
        return "dpo"
    return "sft"


@dataclasses.dataclass
class PlanRequest:
    """Everything `launch/plan.py` passes in."""

    config: str
    overrides: list[str] = dataclasses.field(default_factory=list)
    job: str | None = None  # sft | dpo | eval | translate | None (detect)
    nodes: int = 1
    gpus_per_node: int = 8
    gpu: str = "mi250x"
    gpu_memory_gib: float | None = None
    peak_tflops: float | None = None
    arch: str | None = None
    reference_arch: str | None = None
    mfu: float = 0.40
    margin: float = 0.10
    overhead_gib: float | None = None  # None: 2 GiB on GPU, 0 on CPU
    runtime_gib: float | None = None  # CPU runtime baseline; None: CPU_RUNTIME_GIB
    measure_runtime: bool = False
    count_data: bool = False
    max_micro_batch: int = 256
    prompt_tokens: int | None = None  # eval/translate: the longest prompt; None: an estimate from the recipe


@dataclasses.dataclass
class PlanResult:
    lines: list[str]
    arch: Architecture
    settings: RunSettings | GenerationSettings
    plan: MemoryPlan  # at the recipe's settings
    plan_other: MemoryPlan  # the same with activation checkpointing toggled
    largest: dict[bool, int]  # activation checkpointing -> largest micro batch that fits
    budget: float
    throughput: Throughput | None


def make_plan(req: PlanRequest) -> PlanResult:
    """Load the recipe, resolve the architecture and the device, and compute the plan and its printed lines."""
    from trainer.config import load_config, read_yaml
    from trainer.jobs import DPOConfig, SFTConfig

    if req.nodes < 1 or req.gpus_per_node < 1:
        raise PlanError("--nodes and --gpus-per-node must be >= 1")
    if not 0.0 < req.mfu <= 1.0:
        raise PlanError(f"--mfu must be in (0, 1], got {req.mfu}")
    if not 0.0 <= req.margin < 1.0:
        raise PlanError(f"--margin must be in [0, 1), got {req.margin}")
    raw = read_yaml(req.config)
    job = req.job or detect_job(raw)
    if job not in ("sft", "dpo", "eval", "translate"):
        raise PlanError(f"--job must be sft, dpo, eval or translate, got {job!r}")
    device = _device(req)
    if job in ("eval", "translate"):
        return _make_generation_plan(req, job, device)
    cfg = load_config(DPOConfig if job == "dpo" else SFTConfig, req.config, req.overrides)
    world = req.nodes * req.gpus_per_node
    arch, source = resolve_architecture(cfg.model, arch=req.arch)
    settings = settings_from_config(cfg, job=job, world_size=world, device=device.name)
    ref_arch = None
    if job == "dpo" and (req.reference_arch or cfg.reference.path):
        from trainer.jobs import ModelConfig

        ref_model = ModelConfig(**{**cfg.model.__dict__, "path": cfg.reference.path, "init_config": None})
        ref_arch, _ = resolve_architecture(ref_model, arch=req.reference_arch or req.arch)

    on_cpu = device.name == "cpu"
    memory_gib, overhead, budget = _budget(req, device)
    runtime = None
    if on_cpu:
        if req.measure_runtime:
            tokenizer = cfg.model.tokenizer or cfg.model.path
            runtime = float(
                measure_runtime_baseline(
                    model_type=arch.model_type, tokenizer=tokenizer, tensorboard=cfg.logging.tensorboard
                )
            )
        else:
            runtime = (req.runtime_gib if req.runtime_gib is not None else CPU_RUNTIME_GIB) * GiB

    plan = plan_memory(arch, settings, reference_arch=ref_arch, runtime_bytes=runtime)
    other = dataclasses.replace(settings, activation_checkpointing=not settings.activation_checkpointing)
    plan_other = plan_memory(arch, other, reference_arch=ref_arch, runtime_bytes=runtime)
    largest = {
        ac: largest_micro_batch(
            arch,
            dataclasses.replace(settings, activation_checkpointing=ac),
            budget,
            reference_arch=ref_arch,
            runtime_bytes=runtime,
            limit=req.max_micro_batch,
        )
        for ac in (False, True)
    }

    # data (optional)
    num_examples = None
    mean_tokens = None
    data_note = None
    if req.count_data:
        num_examples, mean_tokens, data_note = _count_data(cfg, job)

    peak = req.peak_tflops * 1e12 if req.peak_tflops is not None else devices.peak_flops(device.name)
    throughput = None
    if peak is not None:
        throughput = estimate_throughput(
            arch,
            settings,
            peak_flops=peak,
            mfu=req.mfu,
            global_batch=cfg.train.global_batch_size,
            tokens_per_row=mean_tokens if mean_tokens is not None else settings.seq_len,
            num_examples=num_examples,
            reference_arch=ref_arch,
        )

    lines = _format(
        req=req,
        job=job,
        cfg=cfg,
        arch=arch,
        source=source,
        ref_arch=ref_arch,
        device=device,
        memory_gib=memory_gib,
        overhead=overhead,
        budget=budget,
        plan=plan,
        plan_other=plan_other,
        largest=largest,
        throughput=throughput,
        peak_flops=peak,
        num_examples=num_examples,
        mean_tokens=mean_tokens,
        data_note=data_note,
    )
    return PlanResult(lines, arch, settings, plan, plan_other, largest, budget, throughput)


def _device(req: PlanRequest) -> Any:
    try:
        return devices.lookup(req.gpu)
    except ValueError:
        if req.gpu_memory_gib is None or req.peak_tflops is None:
            raise
        return devices.Device(req.gpu, req.gpu_memory_gib, req.peak_tflops, "given on the command line")


def _budget(req: PlanRequest, device: Any) -> tuple[float, float, float]:
    """(device memory GiB, framework overhead GiB, usable bytes)."""
    on_cpu = device.name == "cpu"
    if req.gpu_memory_gib is not None:
        memory_gib = req.gpu_memory_gib
    elif on_cpu:
        memory_gib = devices.host_memory_gib() / req.gpus_per_node
    else:
        memory_gib = float(device.memory_gib or 0.0)
    overhead = req.overhead_gib if req.overhead_gib is not None else (0.0 if on_cpu else 2.0)
    return memory_gib, overhead, memory_budget(memory_gib, margin=req.margin, overhead_gib=overhead)


# Characters per token assumed for prompt lengths the planner cannot tokenize (conservative for English and
# Finnish with a 50k-130k BPE vocabulary, which average 3-4.5).
CHARS_PER_TOKEN = 2.5


def generation_settings_from_config(
    cfg: Any, *, job: str, world_size: int, device: str, prompt_tokens: int | None = None
) -> GenerationSettings:
    """GenerationSettings of an EvalConfig or TranslateConfig. Prompt lengths, unless given: eval 1,024 tokens
    (IFEval's longest prompts are far shorter); translate, the few-shot prefix and the longest segment
    (`segments.max_chars`) at CHARS_PER_TOKEN, and as new tokens the segment budget (length_factor x the
    segment + extra_new_tokens, at most max_new_tokens)."""
    prefix = 0
    new = cfg.generation.max_new_tokens
    if job == "translate":
        from data.translate.prompt import FewShotPrompt

        prompt = FewShotPrompt.from_config(
            cfg.prompt, source_lang=cfg.source_lang, target_lang=cfg.target_lang
        )
        segment = math.ceil(cfg.segments.max_chars / CHARS_PER_TOKEN)
        prefix = math.ceil(len(prompt.prefix) / CHARS_PER_TOKEN) if cfg.prompt.cache_prefix else 0
        own = segment + math.ceil(len(prompt.suffix("")) / CHARS_PER_TOKEN)
        if not cfg.prompt.cache_prefix:
            own += math.ceil(len(prompt.prefix) / CHARS_PER_TOKEN)
        new = min(new, math.ceil(cfg.segments.length_factor * segment) + cfg.segments.extra_new_tokens)
        default_prompt = own
    else:
        default_prompt = 1024
    return GenerationSettings(
        world_size=world_size,
        device=device,
        sharding=cfg.sharding,
        batch_size=cfg.generation.batch_size,
        prompt_tokens=prompt_tokens or default_prompt,
        new_tokens=new,
        prefix_tokens=prefix,
        model_dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
    )


def _make_generation_plan(req: PlanRequest, job: str, device: Any) -> PlanResult:
    from trainer.config import load_config
    from trainer.jobs import EvalConfig, TranslateConfig

    cfg = load_config(EvalConfig if job == "eval" else TranslateConfig, req.config, req.overrides)
    world = req.nodes * req.gpus_per_node
    arch, source = resolve_architecture(cfg.model, arch=req.arch)
    settings = generation_settings_from_config(
        cfg, job=job, world_size=world, device=device.name, prompt_tokens=req.prompt_tokens
    )
    memory_gib, overhead, budget = _budget(req, device)
    runtime = (
        (req.runtime_gib if req.runtime_gib is not None else CPU_RUNTIME_GIB) * GiB
        if device.name == "cpu"
        else None
    )
    plan = plan_generation(arch, settings, runtime_bytes=runtime)
    s = settings
    lines = [
        f"plan: {req.config} ({job}), {world} ranks = {req.nodes} node(s) x {req.gpus_per_node} {device.name}",
        f"model: {arch.model_type} from {source}: {arch.total_params() / 1e9:.3f}B parameters, {arch.layers} "
        f"layers, hidden {arch.hidden}, heads {arch.heads} (kv {arch.kv_heads}), vocab {arch.vocab}",
        f"run: sharding {s.sharding}, batch {s.batch_size}, prompt {s.prompt_tokens} tokens"
        + (f" after a cached prefix of {s.prefix_tokens}" if s.prefix_tokens else "")
        + f", up to {s.new_tokens} new tokens; {'bf16' if s.compute_bytes == 2 else 'fp32'} compute; attention "
        f"{effective_attention(arch.model_type, s.attn_implementation)}",
        f"device: {device.name}, {memory_gib:.1f} GiB; budget {budget / GiB:.1f} GiB ({req.margin:.0%} margin, "
        f"{overhead:.1f} GiB framework overhead)",
        f"per-device memory at batch {s.batch_size} ({'RSS of one process' if s.on_cpu else 'allocated'}):",
    ]
    for name, value in plan.components.items():
        lines.append(f"  {name:<48s}{format_gib(value)}")
    if s.on_cpu:
        lines.append(f"  {'runtime (python, torch, transformers)':<48s}{format_gib(plan.runtime)}")
    mark = "fits" if plan.peak <= budget else "does NOT fit"
    lines.append(f"  {'peak (recipe)':<48s}{format_gib(plan.peak)}  at the {plan.peak_moment}; {mark}")
    if plan.peak > budget and s.sharding == "replicate":
        sharded = plan_generation(arch, dataclasses.replace(s, sharding="fsdp"), runtime_bytes=runtime)
        lines.append(
            f"  {'peak with sharding: fsdp':<48s}{format_gib(sharded.peak)}; "
            f"{'fits' if sharded.peak <= budget else 'does NOT fit'}"
        )
    largest = 0
    for batch in range(1, req.max_micro_batch + 1):
        if (
            plan_generation(arch, dataclasses.replace(s, batch_size=batch), runtime_bytes=runtime).peak
            > budget
        ):
            break
        largest = batch
    lines.append(f"largest batch that fits (1..{req.max_micro_batch}): {largest}")
    return PlanResult(lines, arch, settings, plan, plan, {False: largest, True: largest}, budget, None)


def _count_data(cfg: Any, job: str) -> tuple[int | None, float | None, str]:
    """(examples, mean tokens per row, note) from the recipe's data via the data pipeline (tokenizer needed)."""
    from data.pipeline import build_dataset
    from trainer.model import prepare_tokenizer

    try:
        tokenizer, _template, _added = prepare_tokenizer(cfg.model, cfg.data.template)
        bundle = build_dataset(
            cfg.data,
            tokenizer=tokenizer,
            max_seq_len=cfg.train.max_seq_len,
            expect="preference" if job == "dpo" else "sft",
        )
    except (ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, None, f"data not counted: {reason}"
    lengths = bundle.lengths()
    if not lengths:
        return 0, None, "data: no examples"
    mean = sum(lengths) / len(lengths)
    return (
        len(lengths),
        mean,
        f"data: {len(lengths)} examples, mean {mean:.0f} tokens per row (max {max(lengths)})",
    )


def _format(**k: Any) -> list[str]:
    req, job, cfg, arch, s = k["req"], k["job"], k["cfg"], k["arch"], k["plan"].settings
    plan, plan_other, device = k["plan"], k["plan_other"], k["device"]
    gib = format_gib
    lines = [
        f"plan: {req.config} ({job}), {s.world_size} ranks = {req.nodes} node(s) x {req.gpus_per_node} {device.name}"
    ]
    n = arch.total_params()
    lines.append(
        f"model: {arch.model_type} from {k['source']}: {n / 1e9:.3f}B parameters ({arch.layers} blocks of "
        f"{arch.block_params() / 1e6:.2f}M, root {arch.root_params() / 1e6:.1f}M), hidden {arch.hidden}, heads "
        f"{arch.heads} (kv {arch.kv_heads}), intermediate {arch.intermediate}, vocab {arch.vocab}, "
        f"{'tied' if arch.tied else 'untied'} embeddings"
    )
    if arch.approximate:
        lines.append(f"note: model_type {arch.model_type!r} is counted as a Llama block (approximate)")
    if k["ref_arch"] is not None:
        ref = k["ref_arch"]
        lines.append(f"reference: {ref.model_type}, {ref.total_params() / 1e9:.3f}B parameters")
    attn = effective_attention(arch.model_type, s.attn_implementation)
    precision = "fp32" if s.compute_bytes == 4 else "bf16"
    master = "fp32" if s.param_bytes == 4 else "bf16"
    per_step = s.micro_batch * s.world_size
    gb = cfg.train.global_batch_size
    valid = gb % per_step == 0
    lines.append(
        f"run: micro batch {s.micro_batch} x {s.rows_per_sample} row(s) x {s.seq_len} tokens, global batch {gb}"
        + (
            f", gradient accumulation {gb // per_step}"
            if valid
            else f" (not a multiple of {per_step}: invalid)"
        )
        + f"; {precision} compute, {master} masters; attention {attn}; loss "
        + ("full logits" if s.loss_chunk_size is None else f"in chunks of {s.loss_chunk_size} tokens")
        + (f"; reference {s.reference}" if s.reference else "")
        + ("; CPU offload" if s.cpu_offload else "")
    )
    peak_flops = k["peak_flops"]
    flops_text = f"{peak_flops / 1e12:.1f} TFLOP/s peak bf16" if peak_flops else "no peak FLOP/s figure"
    lines.append(
        f"device: {device.name}, {k['memory_gib']:.1f} GiB{' host RAM per process' if s.on_cpu else ''}, "
        f"{flops_text}; budget {k['budget'] / GiB:.1f} GiB ({req.margin:.0%} margin, "
        f"{k['overhead']:.1f} GiB framework overhead)"
    )
    lines.append(
        f"per-device memory at micro batch {s.micro_batch} ({'RSS of one process' if s.on_cpu else 'allocated'}):"
    )
    for name, value in plan.components.items():
        if name.startswith("activations"):
            continue
        lines.append(f"  {name:<48s}{gib(value)}")
    with_ac, without_ac = (plan, plan_other) if s.activation_checkpointing else (plan_other, plan)
    lines.append(
        f"  {'activations, no checkpointing':<48s}{gib(plan.components['activations (no checkpointing)'])}"
    )
    lines.append(
        f"  {'activations, checkpointing':<48s}{gib(plan.components['activations (checkpointing)'])}"
    )
    if s.on_cpu:
        lines.append(f"  {'runtime (python, torch, transformers)':<48s}{gib(plan.runtime)}")
    budget = k["budget"]
    for label, p in (("peak, no checkpointing", without_ac), ("peak, checkpointing", with_ac)):
        mark = "fits" if p.peak <= budget else "does NOT fit"
        chosen = " (recipe)" if p is plan else ""
        lines.append(f"  {label + chosen:<48s}{gib(p.peak)}  at {p.peak_moment}; {mark}")
    if s.reference == "precompute":
        pre = precompute_phase_bytes(arch, s, k["ref_arch"]) + plan.runtime
        lines.append(f"  {'reference precompute pass (before training)':<48s}{gib(pre)}")
    largest = k["largest"]
    quota = gb // s.world_size if gb % s.world_size == 0 else None
    divisors = ""
    if quota:
        fit_div = {
            ac: max((b for b in range(1, largest[ac] + 1) if quota % b == 0), default=0) for ac in largest
        }
        divisors = f"; dividing global batch / ranks = {quota}: {fit_div[False]} without, {fit_div[True]} with checkpointing"
    lines.append(
        f"largest micro batch that fits (1..{req.max_micro_batch}): {largest[False]} without checkpointing, "
        f"{largest[True]} with{divisors}"
    )
    if k["data_note"]:
        lines.append(k["data_note"])
    t = k["throughput"]
    if t is None:
        lines.append("throughput: no peak FLOP/s for this device (give --peak-tflops)")
    else:
        basis = "mean tokens per row" if k["mean_tokens"] is not None else "every row at max_seq_len"
        text = (
            f"throughput at MFU {req.mfu:.2f}: {t.tokens_per_second_per_device:,.0f} tokens/s/device "
            f"({t.flops_per_token / 1e9:.1f} GFLOP/token), {t.tokens_per_second_per_device * s.world_size:,.0f} "
            f"tokens/s in all, {t.steps_per_second:.4g} steps/s = {1 / t.steps_per_second:.3g} s/step "
            f"({t.tokens_per_step:,.0f} tokens/step, {basis})"
        )
        if t.seconds_per_epoch is not None:
            text += f"; {_duration(t.seconds_per_epoch)} per epoch ({k['num_examples'] // gb} steps)"
        lines.append(text)
    return lines
