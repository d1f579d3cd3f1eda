"""Which attention a model runs, chosen per architecture: users never name one for a supported model.

Rotary models (Llama, Mistral, Qwen, Gemma, ...) run transformers' SDPA. ALiBi models (BLOOM, hence Poro-34B)
have only an eager path in transformers, which materialises fp32 scores [B, heads, T, T] in every layer; sisu
replaces the attention of each BLOOM block with `torch.nn.functional.scaled_dot_product_attention` on one
additive bias (ALiBi slopes times key positions, plus the causal/padding/document mask) that is built once per
forward and shared by all layers (the memory-efficient kernels on GPU never build the scores). The math is the
same as transformers' eager BLOOM attention: softmax(q k^T / sqrt(d) + slope_h * pos_k + mask) v.

Packing. ALiBi depends only on the distance between positions, so a document packed with a block-diagonal mask
attends exactly as it would unpacked. The key positions come from the 4D mask itself (a token's position in its
document is the number of keys its row may see, minus one; for DPO rows, rejected tokens continue from the
prompt), so packed and unpacked rows get bit-identical biases. Eager attention (any architecture, when asked for
explicitly) adds masks instead of selecting with them, so packed batches hand eager models an additive mask
(`additive_mask`).

`model.attn_implementation`: auto (the default: SDPA as above), sdpa (the same), eager (transformers' eager
attention, for comparisons), or any other transformers implementation for rotary models (flash_attention_2,
flex_attention), passed through.
"""

from __future__ import annotations

import functools
import inspect
import math
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.bloom.modeling_bloom import BloomAttention, BloomModel

from data.errors import ConfigError

ALIBI_MODEL_TYPES = {"bloom"}
ALIBI_SDPA = "alibi_sdpa"  # sisu's own implementation, installed on top of transformers' eager BLOOM


def resolve_attention(model_type: str, requested: str) -> tuple[str, bool]:
    """(the implementation transformers loads, whether sisu installs its ALiBi SDPA on top)."""
    if model_type in ALIBI_MODEL_TYPES:
        if requested in ("auto", "sdpa"):
            return "eager", True
        if requested == "eager":
            return "eager", False
        raise ConfigError(
            f"model.attn_implementation={requested!r} is not available for {model_type} (ALiBi): use auto "
            "(sisu's SDPA with an ALiBi bias, the default) or eager"
        )
    return ("sdpa" if requested == "auto" else requested), False


def attention_name(model: torch.nn.Module) -> str:
    """What the model runs: alibi_sdpa, sdpa, eager, ... (for logs and for picking the packed mask)."""
    return getattr(model, "sisu_attention", None) or model.config._attn_implementation


def needs_additive_mask(model: torch.nn.Module) -> bool:
    """Eager attention adds the mask to the scores: a boolean packed mask must become 0 / -inf first."""
    return attention_name(model) == "eager"


def additive_mask(mask: torch.Tensor) -> torch.Tensor:
    """Boolean mask (True = attend) -> float32 additive mask (0 where attended, the float32 minimum elsewhere)."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    return out.masked_fill_(~mask, torch.finfo(torch.float32).min)


def _visible(mask: torch.Tensor) -> torch.Tensor:
    """A 4D mask as booleans, True where a query may attend a key (boolean or additive input)."""
    if mask.dtype == torch.bool:
        return mask
    return mask > torch.finfo(mask.dtype).min / 2


def alibi_slopes(num_heads: int, *, device: torch.device | None = None) -> torch.Tensor:
    """ALiBi's per-head slopes (Press et al. 2022), float32 [num_heads].

    For n = 2^k heads the slopes are the geometric sequence 2^(-8/n), 2^(-16/n), ..., 2^(-8); otherwise the
    sequence of the largest power of two below n, followed by every other slope of the sequence for twice that
    power (the odd-numbered ones), as many as the heads still need.
    """
    closest = 2 ** int(math.floor(math.log2(num_heads)))

    def sequence(size: int, count: int, step: int) -> torch.Tensor:
        base = torch.tensor(2.0 ** (-8.0 / size), dtype=torch.float32)
        return torch.pow(base, torch.arange(1, 1 + step * count, step, dtype=torch.int32))

    slopes = sequence(closest, closest, 1)
    if closest < num_heads:
        slopes = torch.cat([slopes, sequence(2 * closest, num_heads - closest, 2)])
    return slopes.to(device or torch.device("cpu"))


@functools.cache
def _slopes_on(num_heads: int, device: torch.device) -> torch.Tensor:
    """The slopes on `device`, built once: building them per forward (as transformers does) copies host values to
    the GPU, which waits for the stream, in every micro-batch."""
    return alibi_slopes(num_heads, device=device)


def install(model: torch.nn.Module, *, sdpa: bool) -> None:
    """Prepare a BLOOM model for sisu: 4D (packed) masks accepted, and with `sdpa` the SDPA attention."""
    for module in model.modules():
        if type(module) is BloomModel:
            module.__class__ = PackedAlibiBloomModel
    if sdpa:
        shared = _BiasCache()
        for module in model.modules():
            if type(module) is BloomAttention:
                module.__class__ = AlibiSDPAAttention
                module.bias_cache = shared
        # without gradients (eval, generation, the DPO reference) nothing needs the bias after the forward
        model.register_forward_hook(lambda *_: None if torch.is_grad_enabled() else shared.clear())
    model.sisu_attention = ALIBI_SDPA if sdpa else "eager"


class _BiasCache:
    """The last bias built, keyed by the (alibi, mask) tensors it came from: every layer of one forward (and the
    activation-checkpointing recompute in backward) reuses one tensor instead of building its own."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.alibi: weakref.ref | None = None
        self.mask: weakref.ref | None = None
        self.bias: torch.Tensor | None = None

    def get(self, alibi: torch.Tensor, mask: torch.Tensor | None, build: Any) -> torch.Tensor:
        same_alibi = self.alibi is not None and self.alibi() is alibi
        same_mask = (mask is None and self.mask is None) or (
            mask is not None and self.mask is not None and self.mask() is mask
        )
        if not (same_alibi and same_mask and self.bias is not None):
            self.bias = build()
            self.alibi = weakref.ref(alibi)
            self.mask = weakref.ref(mask) if mask is not None else None
        return self.bias


def build_bias(
    alibi: torch.Tensor, mask: torch.Tensor | None, *, batch: int, heads: int, q_len: int, dtype: torch.dtype
) -> torch.Tensor:
    """[B, H, q, kv] additive bias: ALiBi ([B*H, 1, kv], slope times key position) plus the mask.

    Masked entries hold the dtype's minimum (finite, so a fully masked padding row stays a uniform softmax as in
    transformers' eager path). The last dimension is allocated in multiples of 16 elements, the alignment the
    memory-efficient SDPA kernel needs on GPU (it would otherwise copy the bias in every layer).
    """
    kv = alibi.shape[-1]
    padded = -(-kv // 16) * 16
    storage = torch.empty(batch, heads, q_len, padded, dtype=dtype, device=alibi.device)
    bias = storage[..., :kv]
    bias.copy_(alibi.view(batch, heads, 1, kv).expand(batch, heads, q_len, kv))
    if mask is not None:
        bias.masked_fill_(~_visible(mask).expand(batch, heads, q_len, kv), torch.finfo(dtype).min)
    return bias


class AlibiSDPAAttention(BloomAttention):
    """BLOOM attention on `scaled_dot_product_attention` with an additive ALiBi bias (same parameters and state
    dict as transformers' BloomAttention; installed by swapping the class of each attention module)."""

    bias_cache: _BiasCache

    def forward(
        self,
        hidden_states: torch.Tensor,
        residual: torch.Tensor,
        alibi: torch.Tensor,
        attention_mask: torch.Tensor | None,
        layer_past: Any = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        batch, q_len, _ = hidden_states.shape
        query, key, value = self._reshape(self.query_key_value(hidden_states))  # [B, H, T, d] each
        if layer_past is not None:
            key, value = layer_past.update(key, value, self.layer_idx)
        bias = self.bias_cache.get(
            alibi,
            attention_mask,
            lambda: build_bias(
                alibi, attention_mask, batch=batch, heads=self.num_heads, q_len=q_len, dtype=query.dtype
            ),
        )
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=bias,
            dropout_p=self.attention_dropout.p if self.training else 0.0,
            scale=self.inv_norm_factor,
        )
        context = context.transpose(1, 2).reshape(batch, q_len, self.num_heads * self.head_dim)
        if self.pretraining_tp > 1 and self.slow_but_exact:
            slices = self.hidden_size / self.pretraining_tp
            output = torch.zeros_like(context)
            for i in range(self.pretraining_tp):
                lo, hi = int(i * slices), int((i + 1) * slices)
                output = output + F.linear(context[:, :, lo:hi], self.dense.weight[:, lo:hi])
        else:
            output = self.dense(context)
        return residual + F.dropout(output, p=self.hidden_dropout, training=self.training), None


class PackedAlibiBloomModel(BloomModel):
    """BloomModel that also takes a 4D mask (packed rows): the key positions are read off the mask. With either
    mask the slopes are built once per device (`_slopes_on`)."""

    def build_alibi_tensor(
        self, attention_mask: torch.Tensor, num_heads: int, dtype: torch.dtype
    ) -> torch.Tensor:
        if attention_mask.dim() == 4:
            visible = _visible(attention_mask)
            if visible.shape[-1] != visible.shape[-2]:
                raise ValueError(
                    "a 4D attention mask for BLOOM must be square (no KV cache with packed rows)"
                )
            # a key's position in its document = keys its own query row sees - 1 (causal, same document)
            positions = visible[:, 0].sum(-1) - 1  # [B, T]
        else:  # transformers' rule: a key's position = the non-padding keys before it
            positions = (attention_mask.cumsum(-1) - 1) * attention_mask
        slopes = _slopes_on(num_heads, attention_mask.device)
        alibi = slopes[None, :, None] * positions[:, None, :].to(torch.float32)
        return alibi.reshape(-1, 1, positions.shape[-1]).to(dtype)


def check_packing_supported(model: torch.nn.Module) -> None:
    """Packed documents must restart their positions: rotary models take restarting `position_ids`; ALiBi
    models (BLOOM, Poro) read the positions off the block-diagonal mask once sisu prepared them
    (runtime/attention.py, done by `build_model`)."""
    if getattr(model, "sisu_attention", None) is not None:
        return
    if "position_ids" not in inspect.signature(model.forward).parameters:
        raise ConfigError(
            f"data.packing needs a model that takes position_ids or an ALiBi model loaded by sisu; "
            f"{type(model).__name__} is neither: set data.packing=false (data.group_by_length=true reduces padding)"
        )
