"""Model FLOPs per training token, for the MFU metric (and the planner's throughput estimate).

The PaLM accounting (Chowdhery et al. 2022, appendix B; the 6N rule of Kaplan et al. and Chinchilla):

    6·N + 12·L·(a·d)·s

N counts the parameters that enter a matmul per token: all blocks, the final norm and the LM head (V·h, also when
it is tied to the input embedding), but not the input-embedding lookup. 6 = 2 (multiply-add) x 3 (forward, and
backward for inputs and weights). The second term is attention's QK^T and AV products over a context of s tokens
(2·2·L·a·d·s forward, x3 with backward), counted as if non-causal, as PaLM does. Activation-checkpointing
recomputation is not counted: these are model FLOPs, not hardware FLOPs.
"""

from __future__ import annotations

import torch


def flops_per_token(*, matmul_params: int, layers: int, heads: int, head_dim: int, seq_len: int) -> float:
    """6·N + 12·L·a·d·s: see the module docstring. `seq_len` is the attention context of the counted tokens."""
    return 6.0 * matmul_params + 12.0 * layers * heads * head_dim * seq_len


def model_flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """`flops_per_token` of a (possibly FSDP-sharded) transformers causal LM, counted from its parameters."""
    config = model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    total = sum(p.numel() for p in model.parameters())  # global sizes, also for FSDP2's sharded DTensors
    matmul = (
        total
        - embedding.numel()
        + (embedding.numel() if head is not None and head.weight is embedding else 0)
    )
    return flops_per_token(
        matmul_params=matmul, layers=config.num_hidden_layers, heads=heads, head_dim=head_dim, seq_len=seq_len
    )
