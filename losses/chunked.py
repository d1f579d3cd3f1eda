"""LM head + log-probabilities in chunks of tokens, never materialising [tokens x vocab] logits at once.

For SmolLM2 (vocabulary 49,152) a micro-batch of 2 x 512 tokens has 50M fp32 logits (200 MB) and as much again
for their gradient; Poro (vocabulary 128,000) at 4 x 2048 tokens, 4 GB. Here each chunk's logits exist only
while that chunk is processed, in forward and again (recomputed) in backward.
"""

from __future__ import annotations

import torch


class _ChunkedTokenLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int):
        logps = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lses = torch.empty_like(logps)
        for start in range(0, hidden.shape[0], chunk_size):
            end = start + chunk_size
            logits = (hidden[start:end] @ weight.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            lses[start:end] = lse
            logps[start:end] = logits.gather(-1, targets[start:end, None]).squeeze(-1) - lse
        ctx.save_for_backward(hidden, weight, targets, lses)
        ctx.chunk_size = chunk_size
        return logps

    @staticmethod
    def backward(ctx, grad_logps: torch.Tensor):
        hidden, weight, targets, lses = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if ctx.needs_input_grad[1]
            else None
        )
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            end = start + ctx.chunk_size
            h = hidden[start:end]
            logits = (h @ weight.t()).float()
            # d logp_i / d logits_i = onehot(target_i) - softmax(logits_i)
            grad_logits = torch.exp(logits - lses[start:end, None]).mul_(-grad_logps[start:end, None].float())
            grad_logits.scatter_add_(-1, targets[start:end, None], grad_logps[start:end, None].float())
            grad_logits = grad_logits.to(hidden.dtype)
            if grad_hidden is not None:
                grad_hidden[start:end] = grad_logits @ weight
            if grad_weight is not None:  # in place: no V x d temporary per chunk
                grad_weight.addmm_(grad_logits.t().float(), h.float())
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None


def chunked_token_logps(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk_size: int = 1024
) -> torch.Tensor:
    r"""log p(target_i | h_i) for each row of `hidden`, with logits :math:`z_i = W h_i` computed chunk by chunk.

    .. math::
        \log p_i = z_{i, y_i} - \log \sum_v e^{z_{i,v}}

    Args:
        hidden: [N, d] final hidden states (already shifted: row i predicts targets[i]).
        weight: [V, d] output embedding (LM head) weight.
        targets: [N] token ids (no ignored positions: select the rows you need first).
        chunk_size: rows per chunk; peak extra memory is about chunk_size x V x 4 bytes, twice in backward.

    Returns:
        [N] float32, differentiable with respect to `hidden` and `weight`.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"expected hidden [N, d] and weight [V, d], got {tuple(hidden.shape)}, {tuple(weight.shape)}"
        )
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"expected targets [N], got {tuple(targets.shape)} for {hidden.shape[0]} rows")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return _ChunkedTokenLogps.apply(hidden, weight, targets, chunk_size)


def _select_targets(
    hidden: torch.Tensor, labels: torch.Tensor, *, ignore_index: int, label_positions: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden rows [N, d], their next labels [N], their flat positions [N]) of the positions with a target.

    Position (b, t) is flat index b * T + t; its hidden state predicts labels[b, t + 1]. Finding the positions
    from `labels` on a GPU waits for the device (nonzero); `label_positions` computed on the host avoids that.
    """
    batch, length = labels.shape
    if label_positions is None:
        mask = labels[:, 1:] != ignore_index
        rows, cols = mask.nonzero(as_tuple=True)
        label_positions = rows * length + cols
    flat_labels = labels.reshape(-1)
    targets = flat_labels[label_positions + 1]
    return hidden.reshape(batch * length, -1).index_select(0, label_positions), targets, label_positions


def label_positions(labels: torch.Tensor, *, ignore_index: int = -100) -> torch.Tensor:
    """Flat indices b * T + t of the positions whose next label (b, t + 1) is a target: [N] int64, row-major."""
    rows, cols = (labels[:, 1:] != ignore_index).nonzero(as_tuple=True)
    return rows * labels.shape[1] + cols


def chunked_sequence_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    chunk_size: int = 1024,
    label_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Per-sequence sums of target log-probs from the final hidden states: the chunked `sequence_logps`.

    Shifts like the loss functions (hidden at t predicts labels at t + 1) and computes the LM head only for
    positions that have a target, so masked prompt tokens cost nothing.

    Args:
        hidden: [B, T, d]; weight: [V, d]; labels: [B, T] aligned with the inputs, `ignore_index` ignored.
        label_positions: optional `label_positions(labels)` computed beforehand (on the host), so the call
            never waits for the device.

    Returns:
        [B] float32.
    """
    rows, targets, positions = _select_targets(
        hidden, labels, ignore_index=ignore_index, label_positions=label_positions
    )
    logps = chunked_token_logps(rows, weight, targets, chunk_size=chunk_size)
    out = torch.zeros(labels.shape[0], dtype=torch.float32, device=hidden.device)
    return out.index_add(0, torch.div(positions, labels.shape[1], rounding_mode="floor"), logps)


class _FusedNLLSum(torch.autograd.Function):
    """sum_i -log p(target_i | h_i), with the gradients computed in the same pass over the chunks.

    The output is a scalar, so its gradients are the ones of a unit upstream gradient times the upstream scalar:
    they are computed chunk by chunk in the forward (each chunk's logits exist once, instead of being recomputed
    in the backward) and scaled in the backward. What lives from the forward to the backward is
    grad_hidden [N, d] and grad_weight [V, d] (float32), the size of the head's own gradient.
    """

    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int, grads: bool
    ):
        # needs_input_grad stays True under no_grad: `grads` (grad mode at the call) says whether a backward can come
        need_hidden, need_weight = grads and ctx.needs_input_grad[0], grads and ctx.needs_input_grad[1]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        )
        for start in range(0, hidden.shape[0], chunk_size):
            end = start + chunk_size
            h = hidden[start:end]
            logits = (h @ weight.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(-1, targets[start:end, None]).squeeze(-1)).sum()
            if need_hidden or need_weight:
                # d(-log p_i) / d logits_i = softmax(logits_i) - onehot(target_i), in place over the logits
                grad_logits = logits.sub_(lse[:, None]).exp_()
                grad_logits.scatter_add_(-1, targets[start:end, None], torch.full_like(lse[:, None], -1.0))
                if grad_hidden is not None:
                    grad_hidden[start:end] = grad_logits.to(hidden.dtype) @ weight
                if grad_weight is not None:
                    grad_weight.addmm_(grad_logits.t(), h.float())
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype) if grad_weight is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_total.float()
        return (
            grad_hidden * scale.to(grad_hidden.dtype) if grad_hidden is not None else None,
            grad_weight * scale.to(grad_weight.dtype) if grad_weight is not None else None,
            None,
            None,
            None,
        )


def chunked_sft_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    chunk_size: int = 1024,
    label_positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The chunked equivalent of `losses.sft_loss`: (summed token cross-entropy, number of target tokens).

    .. math::
        L = -\sum_{t:\, y_{t+1} \neq \text{ignore}} \log \operatorname{softmax}(W h_t)_{y_{t+1}}

    Shifts like `sft_loss` and runs the LM head only on positions with a target. Because L is a scalar, the
    gradients with respect to `hidden` and `weight` are computed in the same chunked pass as the loss (no logits
    are recomputed in the backward, unlike `chunked_sequence_logps`); they are held until the backward, the size
    of `hidden` and `weight` in float32.

    Args:
        hidden: [B, T, d]; weight: [V, d]; labels: [B, T] aligned with the inputs, `ignore_index` ignored.
        label_positions: optional `label_positions(labels)` computed beforehand (on the host), so the call
            never waits for the device.

    Returns:
        (loss_sum float32 scalar, num_tokens int64 scalar).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    rows, targets, positions = _select_targets(
        hidden, labels, ignore_index=ignore_index, label_positions=label_positions
    )
    loss_sum = _FusedNLLSum.apply(rows, weight, targets, chunk_size, torch.is_grad_enabled())
    return loss_sum, torch.tensor(positions.numel(), dtype=torch.int64, device=hidden.device)
