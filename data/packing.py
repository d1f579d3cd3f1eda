"""Padding-free packing of one optimizer step's examples into rows, with attention isolated per document.

Packing works on the examples of one optimizer step (this rank's share), never across steps, so an optimizer
step sees exactly the examples it would see unpacked: `train.global_batch_size` still counts examples, the
learning-rate schedule is unchanged, and the loss of every step equals the unpacked loss (tested). The rows are
filled best-fit decreasing (each unit, longest first, goes to the row whose free space it fills best) and the
fullest rows go first, `rows_per_micro_batch` at a time.

SFT: one unit per example, rows of `train.max_seq_len`. Inside a row, position ids restart at 0 for every
document and a block-diagonal causal mask keeps documents apart. The first token of every document carries no
label: it would otherwise be "predicted" from the previous document's last token, a target that does not exist
when the examples are unpacked.

DPO: one unit per pair, laid out prompt | chosen | rejected, in rows of 2 x `train.max_seq_len` (the width of an
unpacked pair, so a pair always fits). The prompt is computed once for both completions: chosen tokens attend
to the prompt and to earlier chosen tokens, rejected tokens to the prompt and to earlier rejected tokens, never
to the chosen ones; the rejected completion's position ids continue from the prompt, as if it followed it
directly. Targets are explicit (which position predicts which token, for which completion), because the first
rejected token is predicted from the last prompt token, not from its left neighbour in the row.

The whole micro-batch is never flattened into one row: with SDPA and no variable-length kernels, attention cost
grows with the square of the row length, so rows stay at their capacity and the batch dimension stays.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

import torch

from data.tokenize import IGNORE_INDEX, PreferenceExample, SFTExample

SHARED, CHOSEN, REJECTED = 0, 1, 2  # branches of a unit: a query sees its own branch and the shared one


def best_fit_decreasing(lengths: Sequence[int], *, capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of at most `capacity`, best-fit decreasing.

    Deterministic: ties in length keep the input order; bins are returned in creation order.
    """
    if any(n > capacity for n in lengths):
        raise ValueError(f"a unit of {max(lengths)} tokens is longer than the packing length {capacity}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (free space, bin index)
    for index in order:
        size = lengths[index]
        pos = bisect.bisect_left(free, (size, -1))
        if pos < len(free):
            space, row = free.pop(pos)
            bins[row].append(index)
            bisect.insort(free, (space - size, row))
        else:
            bins.append([index])
            bisect.insort(free, (capacity - size, len(bins) - 1))
    return bins


def plan_micro_batches(
    lengths: Sequence[int], *, capacity: int, rows_per_micro_batch: int
) -> list[list[list[int]]]:
    """Micro-batches of rows of unit indices: bins by best-fit decreasing, fullest rows first (so rows of similar
    fill share a micro-batch and little is padded), `rows_per_micro_batch` rows each."""
    if rows_per_micro_batch < 1:
        raise ValueError(f"rows_per_micro_batch must be >= 1, got {rows_per_micro_batch}")
    bins = best_fit_decreasing(lengths, capacity=capacity)
    bins.sort(key=lambda members: -sum(lengths[i] for i in members))  # stable: creation order on ties
    return [bins[i : i + rows_per_micro_batch] for i in range(0, len(bins), rows_per_micro_batch)]


@dataclasses.dataclass(frozen=True)
class PackedRow:
    """Several SFT documents in one row; `doc_lengths` gives their token counts in order."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    doc_lengths: tuple[int, ...]

    @property
    def num_target_tokens(self) -> int:
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)

    @property
    def position_ids(self) -> list[int]:
        return [i for n in self.doc_lengths for i in range(n)]


def pack_row(examples: Sequence[SFTExample]) -> PackedRow:
    """The documents of one row, in the given order; each document's first label is dropped."""
    ids: list[int] = []
    labels: list[int] = []
    for example in examples:
        ids += example.input_ids
        labels += (IGNORE_INDEX,) + tuple(example.labels[1:])
    return PackedRow(tuple(ids), tuple(labels), tuple(len(e.input_ids) for e in examples))


def _tree_mask(document_ids: torch.Tensor, branches: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] bool: query t may attend key s when both are in the same unit, s <= t, and s is on the shared
    branch or on t's branch. Padding (document id -1) attends to itself only, so no softmax row is empty."""
    length = document_ids.shape[1]
    same_unit = (document_ids[:, :, None] == document_ids[:, None, :]) & (document_ids[:, :, None] >= 0)
    visible_branch = (branches[:, None, :] == SHARED) | (branches[:, :, None] == branches[:, None, :])
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = (same_unit & visible_branch & causal)[:, None]
    return mask | torch.eye(length, dtype=torch.bool)[None, None]


def collate_packed(rows: Sequence[PackedRow], *, pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, labels, position_ids, attention_mask [B, T] (1 = real token), document_ids [B, T] (-1 = pad),
    and packed_mask [B, 1, T, T]: True where query t may attend key s (same document, s <= t)."""
    length = max(len(r.input_ids) for r in rows)
    batch = len(rows)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((batch, length), dtype=torch.long)
    document_ids = torch.full((batch, length), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        n = len(row.input_ids)
        input_ids[b, :n] = torch.tensor(row.input_ids)
        labels[b, :n] = torch.tensor(row.labels)
        position_ids[b, :n] = torch.tensor(row.position_ids)
        document_ids[b, :n] = torch.repeat_interleave(
            torch.arange(len(row.doc_lengths)), torch.tensor(row.doc_lengths)
        )
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "attention_mask": (document_ids >= 0).long(),
        "document_ids": document_ids,
        "packed_mask": _tree_mask(document_ids, torch.zeros_like(document_ids)),
    }


def pair_length(example: PreferenceExample) -> int:
    """Tokens of a packed pair: the prompt once, then both completions."""
    return len(example.prompt_ids) + len(example.chosen_ids) + len(example.rejected_ids)


def collate_packed_pairs(
    rows: Sequence[Sequence[PreferenceExample]], indices: Sequence[Sequence[int]], *, pad_id: int
) -> dict[str, torch.Tensor]:
    """Rows of packed pairs (prompt | chosen | rejected each) -> tensors for one forward.

    Besides input_ids, position_ids, attention_mask [B, T] and packed_mask [B, 1, T, T], the targets are flat:
    `target_positions` [N] indexes the flattened [B * T] positions whose hidden state predicts `target_ids` [N],
    and `target_segments` [N] says for which completion: 2k for the chosen, 2k + 1 for the rejected completion of
    the k-th pair of the batch, whose dataset index is `index[k]`.
    """
    length = max(sum(pair_length(e) for e in row) for row in rows)
    batch = len(rows)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    position_ids = torch.zeros((batch, length), dtype=torch.long)
    document_ids = torch.full((batch, length), -1, dtype=torch.long)
    branches = torch.zeros((batch, length), dtype=torch.long)
    positions: list[int] = []
    targets: list[int] = []
    segments: list[int] = []
    pair = 0
    for b, row in enumerate(rows):
        offset = 0
        for unit, example in enumerate(row):
            prompt, chosen, rejected = example.prompt_ids, example.chosen_ids, example.rejected_ids
            ids = prompt + chosen + rejected
            n, p = len(ids), len(prompt)
            input_ids[b, offset : offset + n] = torch.tensor(ids)
            position_ids[b, offset : offset + n] = torch.tensor(
                [*range(p + len(chosen)), *range(p, p + len(rejected))]
            )
            document_ids[b, offset : offset + n] = unit
            branches[b, offset + p : offset + p + len(chosen)] = CHOSEN
            branches[b, offset + p + len(chosen) : offset + n] = REJECTED
            start = b * length + offset
            for branch, completion, first in (
                (0, chosen, start + p),
                (1, rejected, start + p + len(chosen)),
            ):
                if not completion:
                    continue
                # token j of the completion is predicted at the previous position of its own branch: the last
                # prompt token for j = 0 (without a prompt, the first token has no target, as unpacked)
                sources = ([start + p - 1] if p else []) + list(range(first, first + len(completion) - 1))
                predicted = completion if p else completion[1:]
                positions += sources
                targets += predicted
                segments += [2 * pair + branch] * len(predicted)
            offset += n
            pair += 1
    flat_index = [i for row in indices for i in row]
    return {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "attention_mask": (document_ids >= 0).long(),
        "packed_mask": _tree_mask(document_ids, branches),
        "target_positions": torch.tensor(positions, dtype=torch.long),
        "target_ids": torch.tensor(targets, dtype=torch.long),
        "target_segments": torch.tensor(segments, dtype=torch.long),
        "index": torch.tensor(flat_index, dtype=torch.long),
    }
