"""What differs between SFT and DPO inside one micro-step: collation, the loss, and what to count.

A task's `loss` returns a *sum* over the micro-batch (token losses for SFT, pair losses for DPO); the trainer
divides by the global count of the optimizer step (`normaliser`, summed over micro-batches and ranks) so that the
update never depends on the world size or the accumulation steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from data.collate import collate_sft
from data.tokenize import IGNORE_INDEX, SFTExample
from losses import neftune_noise, sft_loss


class Task(Protocol):
    kind: str
    count_name: str  # what `normaliser` counts: num_tokens (SFT) or num_pairs (DPO)

    def collate(self, examples: Sequence[Any], indices: Sequence[int]) -> dict[str, torch.Tensor]: ...

    def normaliser(self, batch: dict[str, torch.Tensor]) -> int: ...

    def loss(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


class NEFTuneHook:
    """Adds NEFTune noise to the input-embedding output in training mode, with the micro-batch's real lengths."""

    def __init__(self, embedding: torch.nn.Module, alpha: float) -> None:
        self.alpha = alpha
        self.attention_mask: torch.Tensor | None = None
        self.handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training or self.alpha == 0:
            return None
        return neftune_noise(output, alpha=self.alpha, attention_mask=self.attention_mask)


class SFTTask:
    kind = "sft"
    count_name = "num_tokens"

    def __init__(self, *, pad_id: int, neftune: NEFTuneHook | None = None) -> None:
        self.pad_id = pad_id
        self.neftune = neftune

    def collate(self, examples: Sequence[SFTExample], indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return collate_sft(examples, pad_id=self.pad_id)

    def normaliser(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    def loss(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.neftune is not None:
            self.neftune.attention_mask = batch["attention_mask"]
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
        loss_sum, num_tokens = sft_loss(logits, batch["labels"])
        return loss_sum, {"loss_sum": float(loss_sum.detach()), "num_tokens": float(num_tokens)}
