"""Tokenized examples -> padded tensors. Labels come from the examples, never from `input_ids != pad`, so an end
token equal to the pad token (SmolLM2: eos == pad) keeps its loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from data.tokenize import IGNORE_INDEX, PreferenceExample, SFTExample


def _pad(rows: Sequence[Sequence[int]], value: int, length: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate_sft(examples: Sequence[SFTExample], *, pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, labels, attention_mask: [B, T] with T the longest example of the micro-batch (right padding)."""
    length = max(len(e.input_ids) for e in examples)
    input_ids = _pad([e.input_ids for e in examples], pad_id, length)
    labels = _pad([e.labels for e in examples], IGNORE_INDEX, length)
    attention_mask = _pad([[1] * len(e.input_ids) for e in examples], 0, length)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def collate_preference(examples: Sequence[PreferenceExample], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected rows: [2B, T]. Labels cover only the completion tokens."""
    rows, labels = [], []
    for field in ("chosen_ids", "rejected_ids"):
        for e in examples:
            completion = getattr(e, field)
            rows.append(e.prompt_ids + completion)
            labels.append((IGNORE_INDEX,) * len(e.prompt_ids) + completion)
    length = max(len(r) for r in rows)
    return {
        "input_ids": _pad(rows, pad_id, length),
        "labels": _pad(labels, IGNORE_INDEX, length),
        "attention_mask": _pad([[1] * len(r) for r in rows], 0, length),
    }
