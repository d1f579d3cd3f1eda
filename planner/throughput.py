"""Throughput from model FLOPs: the trainer's own FLOP count (runtime/flops.py) at an assumed MFU."""

from __future__ import annotations

import dataclasses
from typing import Any

from planner.architectures import Architecture, architecture_from_config
from planner.memory import RunSettings
from runtime.flops import flops_per_token


def model_flops_per_token(config: Any, seq_len: int) -> float:
    """Model FLOPs of one training token (runtime/flops.py's formula, 6·N + 12·L·a·d·s) of an architecture given
    as a transformers config, a mapping with model_type, or an `Architecture`; N is
    `Architecture.flops_params` (every matmul parameter, the LM head counted also when tied)."""
    arch = architecture_from_config(config)
    return flops_per_token(
        matmul_params=arch.flops_params(),
        layers=arch.layers,
        heads=arch.heads,
        head_dim=arch.head_dim,
        seq_len=seq_len,
    )


def forward_flops_per_token(config: Any, seq_len: int) -> float:
    """A third of `model_flops_per_token`: one forward pass (the DPO reference)."""
    return model_flops_per_token(config, seq_len) / 3.0


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
