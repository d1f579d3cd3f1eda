"""Batching of one optimizer step: this rank's examples -> micro-batches, padded or packed.

Unpacked, one micro-batch per list of indices from the sampler. Packed (`data.packing`), the step's examples go
into rows (data/packing.py), `train.micro_batch_size` rows per micro-batch; the number of micro-batches then
varies with the data, so the trainer pads every rank to the same count with `filler_batch()` (no tokens, no
targets: FSDP needs every rank in every forward and backward). `normaliser` is what a micro-batch adds to the
step's count (target tokens for SFT, pairs for DPO), summed over micro-batches and ranks before the first backward.

Everything here runs on the host, before the batch goes to the device; that includes the positions that carry a
target (`label_positions`), so the loss never selects them with a boolean index on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from data.collate import collate_preference, collate_sft
from data.packing import collate_packed, collate_packed_pairs, pack_row, pair_length, plan_micro_batches
from data.tokenize import IGNORE_INDEX, PreferenceExample, SFTExample
from losses.chunked import label_positions

Batch = dict[str, torch.Tensor]


class Batching(Protocol):
    count_name: str  # what `normaliser` counts: num_tokens (SFT) or num_pairs (DPO)
    packed: bool

    def micro_batches(self, examples: Sequence, micro_indices: Sequence[Sequence[int]]) -> list[Batch]: ...

    def filler_batch(self) -> Batch: ...

    def normaliser(self, batch: Batch) -> int: ...


def filler_inputs(pad_id: int) -> Batch:
    """One padding position that nothing attends to and nothing learns from."""
    return {
        "input_ids": torch.full((1, 1), pad_id, dtype=torch.long),
        "position_ids": torch.zeros((1, 1), dtype=torch.long),
        "attention_mask": torch.zeros((1, 1), dtype=torch.long),
        "packed_mask": torch.ones((1, 1, 1, 1), dtype=torch.bool),
    }


def with_label_positions(batch: Batch) -> Batch:
    """Add `label_positions` (flat positions whose next label is a target), computed here on the host."""
    batch["label_positions"] = label_positions(batch["labels"])
    return batch


class _RowBatching:
    """Padding id, packed row length (None: unpacked) and packed rows per micro-batch."""

    def __init__(self, *, pad_id: int, pack_length: int | None = None, rows_per_micro_batch: int = 1) -> None:
        self.pad_id = pad_id
        self.pack_length = pack_length
        self.rows_per_micro_batch = rows_per_micro_batch

    @property
    def packed(self) -> bool:
        return self.pack_length is not None


class SFTBatching(_RowBatching):
    """Chat examples -> micro-batches with labels; packed rows of `pack_length` tokens when set."""

    count_name = "num_tokens"

    def micro_batches(
        self, examples: Sequence[SFTExample], micro_indices: Sequence[Sequence[int]]
    ) -> list[Batch]:
        if self.pack_length is None:
            return [
                with_label_positions(collate_sft([examples[i] for i in idx], pad_id=self.pad_id))
                for idx in micro_indices
            ]
        step = [examples[i] for idx in micro_indices for i in idx]
        plan = plan_micro_batches(
            [len(e.input_ids) for e in step],
            capacity=self.pack_length,
            rows_per_micro_batch=self.rows_per_micro_batch,
        )
        return [
            with_label_positions(
                collate_packed([pack_row([step[j] for j in row]) for row in micro], pad_id=self.pad_id)
            )
            for micro in plan
        ]

    def filler_batch(self) -> Batch:
        batch = filler_inputs(self.pad_id)
        batch["labels"] = torch.full((1, 1), IGNORE_INDEX, dtype=torch.long)
        batch["document_ids"] = torch.full((1, 1), -1, dtype=torch.long)
        return with_label_positions(batch)

    def normaliser(self, batch: Batch) -> int:
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


class PairBatching(_RowBatching):
    """Preference examples -> micro-batches of pairs, each carrying the dataset `index` of its pairs: unpacked,
    chosen rows then rejected rows; packed, prompt | chosen | rejected units in rows of `pack_length` tokens."""

    count_name = "num_pairs"

    def micro_batches(
        self, examples: Sequence[PreferenceExample], micro_indices: Sequence[Sequence[int]]
    ) -> list[Batch]:
        if self.pack_length is None:
            batches = []
            for idx in micro_indices:
                batch = with_label_positions(
                    collate_preference([examples[i] for i in idx], pad_id=self.pad_id)
                )
                batch["index"] = torch.tensor(list(idx), dtype=torch.long)
                batches.append(batch)
            return batches
        step = [i for idx in micro_indices for i in idx]
        plan = plan_micro_batches(
            [pair_length(examples[i]) for i in step],
            capacity=self.pack_length,
            rows_per_micro_batch=self.rows_per_micro_batch,
        )
        return [
            collate_packed_pairs(
                [[examples[step[j]] for j in row] for row in micro],
                [[step[j] for j in row] for row in micro],
                pad_id=self.pad_id,
            )
            for micro in plan
        ]

    def filler_batch(self) -> Batch:
        empty = torch.zeros(0, dtype=torch.long)
        return {
            **filler_inputs(self.pad_id),
            "target_positions": empty,
            "target_ids": empty.clone(),
            "target_segments": empty.clone(),
            "index": empty.clone(),
        }

    def normaliser(self, batch: Batch) -> int:
        return int(batch["index"].numel())
