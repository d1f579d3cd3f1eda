"""Direct preference optimisation losses against a frozen reference model."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

DPOLossType = Literal["sigmoid", "hinge", "ipo", "robust"]


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per-pair DPO losses and the implicit rewards.

    With summed completion log-probs :math:`\pi_c, \pi_r` (policy) and :math:`r_c, r_r` (reference),

    .. math::
        d = (\pi_c - \pi_r) - (r_c - r_r)

    and label smoothing :math:`\varepsilon`:

    - ``sigmoid`` (Rafailov et al. 2023; cDPO when ε > 0):
      :math:`-(1-\varepsilon)\log\sigma(\beta d) - \varepsilon\log\sigma(-\beta d)`
    - ``hinge`` (SLiC): :math:`\max(0, 1 - \beta d)`
    - ``ipo`` (Azar et al. 2023): :math:`(d - \tfrac{1}{2\beta})^2` on *summed* log-probs, as in the IPO
      paper and the original DPO code. TRL length-normalises the log-probs for IPO instead; pass averaged
      log-probs (``sequence_logps(..., average=True)``) to get its behaviour.
    - ``robust`` (Chowdhury et al. 2024):
      :math:`\dfrac{-(1-\varepsilon)\log\sigma(\beta d) + \varepsilon\log\sigma(-\beta d)}{1 - 2\varepsilon}`

    Rewards are :math:`\beta(\pi - r)` for chosen and rejected, detached from the graph.

    When the policy equals the reference, d = 0 and the sigmoid loss is ln 2.

    Args:
        *_logps: [B] summed log-probabilities of the completions.
        beta: inverse temperature (> 0).
        loss_type: one of sigmoid, hinge, ipo, robust.
        label_smoothing: ε in [0, 0.5); used by sigmoid and robust.

    Returns:
        (losses [B], chosen_rewards [B], rejected_rewards [B]).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    d = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    eps = label_smoothing
    if loss_type == "sigmoid":
        losses = -(1 - eps) * F.logsigmoid(beta * d) - eps * F.logsigmoid(-beta * d)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * d)
    elif loss_type == "ipo":
        losses = (d - 1 / (2 * beta)) ** 2
    elif loss_type == "robust":
        losses = (-(1 - eps) * F.logsigmoid(beta * d) + eps * F.logsigmoid(-beta * d)) / (1 - 2 * eps)
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; expected sigmoid, hinge, ipo or robust")
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards
