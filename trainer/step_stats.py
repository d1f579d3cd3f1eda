"""The one place where an optimizer step's numbers are gathered: host counts, device sums, one all-reduce.

Before the first backward only the normaliser crosses ranks (it scales every micro-batch's loss). Everything else
waits until the last backward: the objective's statistics summed on the device, this rank's counts taken from the
CPU batches (real tokens, padded slots, rows) and the stop flag travel in one float64 all-reduce, and come to the
host in one transfer together with the normaliser and the gradient norm.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch

from runtime.distributed import reduce_tensor, stack_values


@dataclasses.dataclass(frozen=True)
class HostCounts:
    """What this rank's micro-batches hold, counted on the host from the CPU tensors (no device round trip)."""

    normaliser: int  # the step's share of the loss normaliser: target tokens (SFT) or pairs (DPO)
    real_tokens: int
    slots: int  # padded positions: real tokens / slots is the padding (or packing) efficiency
    rows: int

    @classmethod
    def of(cls, batches: Sequence[dict[str, torch.Tensor]], normaliser: Callable[[dict], int]) -> HostCounts:
        return cls(
            normaliser=sum(normaliser(b) for b in batches),
            real_tokens=sum(int(b["attention_mask"].sum()) for b in batches),
            slots=sum(b["input_ids"].numel() for b in batches),
            rows=sum(b["input_ids"].shape[0] for b in batches),
        )


@dataclasses.dataclass(frozen=True)
class StepStats:
    """An optimizer step's numbers, summed over its micro-batches and all ranks."""

    sums: dict[str, float]  # the objective's statistics (loss_sum, ...)
    normaliser: float
    real_tokens: float
    slots: float
    rows: float
    grad_norm: float
    stop: bool  # some rank received SIGTERM/SIGUSR1

    @property
    def loss(self) -> float:
        return self.sums["loss_sum"] / max(self.normaliser, 1.0)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


def gather_step_stats(
    sums: dict[str, torch.Tensor],
    counts: HostCounts,
    *,
    normaliser: torch.Tensor,
    grad_norm: torch.Tensor,
    stop: bool,
) -> StepStats:
    """One all-reduce of the device sums, the counts and the stop flag; one device-to-host transfer."""
    keys = sorted(sums)
    host = [counts.real_tokens, counts.slots, counts.rows, 1 if stop else 0]
    totals = reduce_tensor(torch.cat([stack_values([sums[k] for k in keys]), stack_values(host)]))
    values = torch.cat([totals, normaliser, grad_norm.detach().reshape(1).to(totals)]).tolist()
    *stat_values, real_tokens, slots, rows, stops, normaliser_total, grad_norm_value = values
    return StepStats(
        sums=dict(zip(keys, stat_values)),
        normaliser=normaliser_total,
        real_tokens=real_tokens,
        slots=slots,
        rows=rows,
        grad_norm=grad_norm_value,
        stop=stops > 0,
    )
