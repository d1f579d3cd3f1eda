"""Deterministic, resumable assignment of examples to optimizer steps, accumulation steps and ranks.

For each epoch the example indices are permuted with a generator seeded by (seed, epoch). Consecutive runs of
`global_batch_size` indices form the optimizer steps (an incomplete last global batch is dropped, so every rank
runs the same number of micro-steps). Inside a step, micro-step k of rank r takes the slice
`[(k * world_size + r) * micro_batch_size, ... + micro_batch_size)`: ranks are disjoint, and with length
grouping the ranks of one micro-step get examples of similar length (balanced work).

Only the lengths are needed (an array; 8 bytes per example), never the examples. The state is just
(epoch, step): resuming from a checkpoint replays exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from data.errors import ConfigError


def check_batch_sizes(*, global_batch_size: int, micro_batch_size: int, world_size: int = 1) -> int:
    """The global-batch rule, the one place it is checked: every optimizer step's `global_batch_size` examples are
    `micro_batch_size` per rank per micro-step, on every rank. Returns the gradient accumulation steps."""
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size ({global_batch_size}) is not divisible by train.micro_batch_size "
            f"({micro_batch_size}) x world size ({world_size}) = {per_step}"
        )
    return global_batch_size // per_step


class StepSampler:
    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        *,
        global_batch_size: int,
        micro_batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        shuffle: bool = True,
        group_by_length: bool = False,
    ) -> None:
        self.grad_accum = check_batch_sizes(
            global_batch_size=global_batch_size, micro_batch_size=micro_batch_size, world_size=world_size
        )
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.global_batch_size = global_batch_size
        self.micro_batch_size = micro_batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self._order_cache: tuple[int, np.ndarray] | None = None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.lengths) // self.global_batch_size

    @property
    def num_dropped_per_epoch(self) -> int:
        return len(self.lengths) - self.steps_per_epoch * self.global_batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        """All indices of `epoch` in training order (identical on every rank), int64."""
        if self._order_cache is not None and self._order_cache[0] == epoch:
            return self._order_cache[1]
        n = len(self.lengths)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=gen).numpy()
        else:
            order = np.arange(n, dtype=np.int64)
        if self.group_by_length:
            order = self._group(order, epoch)
        self._order_cache = (epoch, order)
        return order

    def _group(self, order: np.ndarray, epoch: int) -> np.ndarray:
        # Sort within windows of 16 global batches, longest first, ties in their shuffled order (keeps
        # randomness), then shuffle whole global batches; an incomplete last batch stays last.
        window = self.global_batch_size * 16
        grouped = np.concatenate(
            [
                chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                for chunk in (order[start : start + window] for start in range(0, len(order), window))
            ]
        ) if len(order) else order  # fmt: skip
        num_full = len(grouped) // self.global_batch_size
        full = grouped[: num_full * self.global_batch_size].reshape(num_full, self.global_batch_size)
        rest = grouped[num_full * self.global_batch_size :]
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 7)
            full = full[torch.randperm(num_full, generator=gen).numpy()]
        return np.concatenate([full.reshape(-1), rest])

    def step_indices(self, epoch: int, step: int) -> list[list[int]]:
        """This rank's micro-batches (grad_accum lists of micro_batch_size indices) for optimizer step `step`."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside epoch of {self.steps_per_epoch} steps")
        order = self.epoch_order(epoch)
        batch = order[step * self.global_batch_size : (step + 1) * self.global_batch_size].tolist()
        micro = self.micro_batch_size
        return [
            batch[(k * self.world_size + self.rank) * micro : (k * self.world_size + self.rank + 1) * micro]
            for k in range(self.grad_accum)
        ]
