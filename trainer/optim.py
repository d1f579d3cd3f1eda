"""AdamW with decay only on weight matrices, and the warmup + decay learning-rate schedule."""

from __future__ import annotations

import math

import torch

from trainer.jobs import OptimConfig


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Matrices (embeddings, projections) decay; vectors (norm weights, biases) never do."""
    decay, no_decay = [], []
    for _name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, *, device: torch.device
) -> torch.optim.Optimizer:
    fused = cfg.fused if cfg.fused is not None else device.type == "cuda"
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.betas[0], cfg.betas[1]),
        eps=cfg.eps,
        fused=fused or None,
    )


def lr_at(step: int, *, total_steps: int, cfg: OptimConfig) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total_steps`.

    Linear warmup over ceil(warmup_ratio * total_steps) steps from lr/warmup to lr, then cosine or linear decay
    towards min_lr_ratio * lr, reached one step after the last (constant keeps lr).
    """
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.scheduler == "constant":
        return cfg.lr
    # progress reaches 1 one step after the last, so the final step still learns
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if cfg.scheduler == "linear":
        return floor + (cfg.lr - floor) * (1.0 - progress)
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
