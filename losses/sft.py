"""Token-level losses of causal language modelling.

Labels are aligned with `input_ids` (the Hugging Face convention): the logits at position t predict the label
at position t + 1, so both functions shift internally. Positions whose label is `ignore_index` do not count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"expected logits [B, T, V] and labels [B, T], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    return logits[:, :-1, :], labels[:, 1:]


def sft_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Summed next-token cross-entropy and the number of target tokens.

    .. math::
        \mathrm{loss\_sum} = -\sum_{b}\sum_{t:\,y_{b,t+1}\neq \mathrm{ignore}} \log p_\theta(y_{b,t+1} \mid x_{b,\le t}),
        \qquad \mathrm{num\_tokens} = \#\{(b, t) : y_{b,t+1} \neq \mathrm{ignore}\}

    The caller divides by the number of target tokens of the whole optimizer step (all micro-batches, all
    ranks), so the result does not depend on how the step is split over ranks or accumulation steps.

    Args:
        logits: [B, T, V] scores (any float dtype; the loss is computed in float32).
        labels: [B, T] token ids aligned with the inputs; `ignore_index` marks positions without loss.

    Returns:
        (loss_sum, num_tokens): a float32 scalar and an int64 scalar.
    """
    shift_logits, shift_labels = _shift(logits, labels)
    loss_sum = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)).float(),
        shift_labels.reshape(-1),
        ignore_index=ignore_index,
        reduction="sum",
    )
    num_tokens = (shift_labels != ignore_index).sum()
    return loss_sum, num_tokens


def token_logps(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100) -> torch.Tensor:
    r"""Per-position log-probabilities of the next label, zero where ignored: [B, T-1], float32.

    :math:`\log p(y) = z_y - \log\sum_v e^{z_v}`, computed without materialising the full log-softmax.
    """
    shift_logits, shift_labels = _shift(logits, labels)
    mask = shift_labels != ignore_index
    safe_labels = torch.where(mask, shift_labels, torch.zeros_like(shift_labels))
    shift_logits = shift_logits.float()
    picked = shift_logits.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)
    logps = picked - torch.logsumexp(shift_logits, dim=-1)
    return logps * mask


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100, average: bool = False
) -> torch.Tensor:
    r"""Per-sequence sum (or mean) of the target tokens' log-probabilities.

    .. math::
        \log \pi(y_b \mid x_b) = \sum_{t:\,y_{b,t+1}\neq \mathrm{ignore}} \log p_\theta(y_{b,t+1} \mid x_{b,\le t})

    With `average=True` the sum is divided by the number of target tokens of the sequence (a sequence
    without target tokens gives 0).

    Returns:
        [B] float32.
    """
    logps = token_logps(logits, labels, ignore_index=ignore_index)
    total = logps.sum(-1)
    if not average:
        return total
    count = (labels[:, 1:] != ignore_index).sum(-1).clamp(min=1)
    return total / count
