"""Padding-free packing: several SFT examples per row of `max_len` tokens, attention isolated per document.

Rows are filled best-fit decreasing (each example, longest first, goes to the row whose free space it fills
best), which leaves little padding on long-tailed chat lengths. Inside a row, position ids restart at 0 for
every document, and `collate_packed` builds a block-diagonal causal mask so no token attends across documents.
The first token of every document carries no label: it would otherwise be "predicted" from the previous
document's last token, a target that does not exist when the examples are unpacked. With that, the loss of a
packed batch equals the loss of the same examples unpacked.

The whole micro-batch is never flattened into one row: with SDPA and no variable-length kernels, attention cost
grows with the square of the row length, so rows stay at `max_len` and the batch dimension stays.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

import torch

from data.tokenize import IGNORE_INDEX, SFTExample


@dataclasses.dataclass(frozen=True)
class PackedRow:
    """Several documents in one row; `doc_lengths` gives their token counts in order."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    doc_lengths: tuple[int, ...]
    lang: str  # the first document's language (rows may mix languages)
    source_id: str  # the first document's source_id
    truncated: bool = False

    @property
    def num_target_tokens(self) -> int:
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)

    @property
    def position_ids(self) -> list[int]:
        return [i for n in self.doc_lengths for i in range(n)]


def pack_examples(examples: Sequence[SFTExample], *, max_len: int) -> list[PackedRow]:
    """Best-fit decreasing packing of `examples` (each at most `max_len` tokens) into rows of `max_len`.

    Deterministic: ties in length keep the input order, rows are returned in creation order.
    """
    if any(len(e.input_ids) > max_len for e in examples):
        raise ValueError(f"an example is longer than the packing length {max_len}; truncate first")
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (free space, bin index)
    for index in order:
        size = len(examples[index].input_ids)
        pos = bisect.bisect_left(free, (size, -1))
        if pos < len(free):
            space, row = free.pop(pos)
            bins[row].append(index)
            bisect.insort(free, (space - size, row))
        else:
            bins.append([index])
            bisect.insort(free, (max_len - size, len(bins) - 1))
    rows = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        for index in members:
            example = examples[index]
            ids += example.input_ids
            labels += (IGNORE_INDEX,) + tuple(example.labels[1:])
        first = examples[members[0]]
        rows.append(
            PackedRow(
                tuple(ids),
                tuple(labels),
                tuple(len(examples[i].input_ids) for i in members),
                first.lang,
                first.source_id,
                any(examples[i].truncated for i in members),
            )
        )
    return rows


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
    same_doc = (document_ids[:, :, None] == document_ids[:, None, :]) & (document_ids[:, :, None] >= 0)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    packed_mask = (same_doc & causal)[:, None]
    # padding queries attend to themselves only, so no softmax row is empty (their outputs carry no loss)
    packed_mask |= torch.eye(length, dtype=torch.bool)[None, None]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "attention_mask": (document_ids >= 0).long(),
        "document_ids": document_ids,
        "packed_mask": packed_mask,
    }


def packing_efficiency(rows: Sequence[PackedRow], *, max_len: int) -> float:
    """Real tokens over row capacity."""
    return sum(len(r.input_ids) for r in rows) / (len(rows) * max_len) if rows else 0.0
