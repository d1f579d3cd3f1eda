"""Per-device memory of a run from arithmetic alone: training steps under sisu's FSDP2 setup (`plan_memory`,
`precompute_phase_bytes`, `largest_micro_batch`) and batched generation (`plan_generation`).

Notation: N parameters, W ranks (FSDP2 shards over all of them), b micro batch, s sequence length,
r = 1 row per sample for SFT, 2 for DPO (chosen and rejected), T = r·b·s tokens per micro-batch, h hidden size,
L layers, a heads, k kv heads, d head dim, I intermediate size, V vocabulary, c bytes of the compute dtype
(2 for bf16, 4 for fp32), p bytes of the stored (master) dtype (4 with `model.dtype: auto`).
**Model state per device** (sisu's `runtime/parallel.py`: one FSDP2 group per decoder block plus the root group,
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
modelling code, checked in tests/planner/test_planner.py with saved-tensor hooks): see
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

from planner.architectures import Architecture, PlanError
from planner.runtime import CPU_RUNTIME_GIB

GiB = 2**30


def effective_attention(model_type: str, requested: str) -> str:
    """The attention a run uses (runtime/attention.py): alibi_sdpa for BLOOM by default, sdpa for rotary models,
    or what `model.attn_implementation` names."""
    from runtime.attention import ALIBI_SDPA, resolve_attention

    implementation, alibi_sdpa = resolve_attention(model_type, requested)
    return ALIBI_SDPA if alibi_sdpa else implementation


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
        else 12.0 * min(s.loss_chunk_size, s.tokens) * ref.vocab + c * ref.hidden * s.tokens  # as plan_memory
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
