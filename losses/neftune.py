"""NEFTune: uniform noise on the input embeddings during fine-tuning (Jain et al. 2024)."""

from __future__ import annotations

import torch


def neftune_noise(
    embeddings: torch.Tensor,
    *,
    alpha: float,
    attention_mask: torch.Tensor | None = None,
    document_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Return `embeddings` plus NEFTune noise.

    .. math::
        \tilde e_{b,t} = e_{b,t} + \frac{\alpha}{\sqrt{L_{b,t}\, d}}\, u_{b,t}, \qquad u_{b,t} \sim U(-1, 1)^d

    where d is the embedding width and :math:`L_{b,t}` the *real* length of the sequence that token (b, t)
    belongs to: the number of non-padding tokens of the sample (from `attention_mask`), or, for packed rows,
    the length of the token's own document (from `document_ids`). The padded or packed row length is never
    used (transformers scales by the padded length: transformers#34659). Padding positions get no noise.

    Args:
        embeddings: [B, T, d].
        alpha: noise scale (the paper's default is 5).
        attention_mask: [B, T], 1 for real tokens, 0 for padding.
        document_ids: [B, T] integer ids of packed documents within each row; negative ids mark padding.
        generator: for reproducible noise (must live on the embeddings' device).

    Returns:
        [B, T, d] with the same dtype as `embeddings`.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if embeddings.dim() != 3:
        raise ValueError(f"expected embeddings [B, T, d], got {tuple(embeddings.shape)}")
    batch, seq, width = embeddings.shape
    real = torch.ones(batch, seq, dtype=torch.bool, device=embeddings.device)
    if attention_mask is not None:
        real &= attention_mask.to(torch.bool)
    if document_ids is not None:
        real &= document_ids >= 0
        # L for every token = size of its document: compare ids within each row ([B, T, T] is fine for the
        # row lengths seen in training; it avoids a Python loop over documents).
        same_doc = (document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2)) & real.unsqueeze(-2)
        lengths = same_doc.sum(-1)
    else:
        lengths = real.sum(-1, keepdim=True).expand(batch, seq)
    scale = alpha / torch.sqrt(lengths.clamp(min=1).to(torch.float32) * width)
    scale = torch.where(real, scale, torch.zeros_like(scale))
    noise = torch.empty(batch, seq, width, dtype=torch.float32, device=embeddings.device)
    noise.uniform_(-1.0, 1.0, generator=generator)
    return embeddings + (noise * scale.unsqueeze(-1)).to(embeddings.dtype)
