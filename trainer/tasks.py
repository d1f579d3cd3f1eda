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
from data.packing import PackedRow, collate_packed
from data.tokenize import IGNORE_INDEX, SFTExample
from losses import neftune_noise, sequence_logps, sft_loss
from losses.chunked import chunked_sequence_logps


class Task(Protocol):
    kind: str
    count_name: str  # what `normaliser` counts: num_tokens (SFT) or num_pairs (DPO)

    def collate(self, examples: Sequence[Any], indices: Sequence[int]) -> dict[str, torch.Tensor]: ...

    def normaliser(self, batch: dict[str, torch.Tensor]) -> int: ...

    def loss(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Forward arguments: packed batches carry restarting position ids and a block-diagonal 4D mask."""
    if "packed_mask" in batch:
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["packed_mask"],
            "position_ids": batch["position_ids"],
            "use_cache": False,
        }
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}


def completion_logps(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], *, chunk_size: int | None
) -> torch.Tensor:
    """Per-row sums of the target tokens' log-probs, [rows] float32.

    With `chunk_size`, the LM head runs in chunks inside the model's forward (a hook on the decoder's output,
    where FSDP has the head's weight gathered) and only on positions with a target; the model itself computes
    logits for the last position only. Without it, the full logits come from the model as usual.
    """
    head = model.get_output_embeddings()
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    inputs = model_inputs(batch)
    if chunk_size is None or decoder is None or getattr(head, "bias", None) is not None:
        return sequence_logps(model(**inputs).logits, batch["labels"])
    result: dict[str, torch.Tensor] = {}

    def on_decoder_output(module: torch.nn.Module, args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        result["logps"] = chunked_sequence_logps(hidden, head.weight, batch["labels"], chunk_size=chunk_size)

    handle = decoder.register_forward_hook(on_decoder_output)
    try:
        model(**inputs, logits_to_keep=1)
    finally:
        handle.remove()
    return result["logps"]


class NEFTuneHook:
    """Adds NEFTune noise to the input-embedding output in training mode, with each sample's (or packed
    document's) real length."""

    def __init__(self, embedding: torch.nn.Module, alpha: float) -> None:
        self.alpha = alpha
        self.attention_mask: torch.Tensor | None = None
        self.document_ids: torch.Tensor | None = None
        self.handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training or self.alpha == 0:
            return None
        return neftune_noise(
            output, alpha=self.alpha, attention_mask=self.attention_mask, document_ids=self.document_ids
        )


class SFTTask:
    kind = "sft"
    count_name = "num_tokens"

    def __init__(
        self, *, pad_id: int, neftune: NEFTuneHook | None = None, chunk_size: int | None = None
    ) -> None:
        self.pad_id = pad_id
        self.neftune = neftune
        self.chunk_size = chunk_size

    def collate(
        self, examples: Sequence[SFTExample | PackedRow], indices: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        if isinstance(examples[0], PackedRow):
            return collate_packed(examples, pad_id=self.pad_id)
        return collate_sft(examples, pad_id=self.pad_id)

    def normaliser(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    def loss(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.neftune is not None:
            self.neftune.attention_mask = batch["attention_mask"]
            self.neftune.document_ids = batch.get("document_ids")
        if self.chunk_size is None:
            loss_sum, num_tokens = sft_loss(model(**model_inputs(batch)).logits, batch["labels"])
        else:
            loss_sum = -completion_logps(model, batch, chunk_size=self.chunk_size).sum()
            num_tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        return loss_sum, {"loss_sum": float(loss_sum.detach()), "num_tokens": float(num_tokens)}
