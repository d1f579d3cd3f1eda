"""What differs between SFT and DPO inside one optimizer step: batching, the loss, and what to count.

A task turns this rank's examples of one optimizer step into micro-batches (`micro_batches`): unpacked, one per
list of indices from the sampler; packed (`data.packing`), the step's examples packed into rows
(`data/packing.py`), `train.micro_batch_size` rows per micro-batch. Packed, the number of micro-batches varies
with the data, so the trainer pads every rank to the same count with `filler_batch()` (no tokens, no targets:
FSDP needs every rank in every forward and backward).

A task's `loss` returns a *sum* over the micro-batch (token losses for SFT, pair losses for DPO); the trainer
divides by the global count of the optimizer step (`normaliser`, summed over micro-batches and ranks) so that the
update never depends on the world size, the accumulation steps or the packing. Its statistics are 0-dim tensors
left on the device: the trainer sums them there and brings them to the host once per step, so nothing in the
micro-batch loop waits for the GPU. For the same reason the positions that carry a target are found on the host
when the batch is built (`label_positions`), not with a boolean index on the device.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from data.collate import collate_sft
from data.packing import collate_packed, pack_row, plan_micro_batches
from data.tokenize import IGNORE_INDEX, SFTExample
from losses import neftune_noise, sequence_logps, sft_loss
from losses.chunked import chunked_sequence_logps, chunked_sft_loss, chunked_token_logps, label_positions
from trainer.attention import additive_mask, needs_additive_mask

Batch = dict[str, torch.Tensor]


class Task(Protocol):
    kind: str
    count_name: str  # what `normaliser` counts: num_tokens (SFT) or num_pairs (DPO)
    packed: bool

    def micro_batches(
        self, examples: Sequence[Any], micro_indices: Sequence[Sequence[int]]
    ) -> list[Batch]: ...

    def filler_batch(self) -> Batch: ...

    def normaliser(self, batch: Batch) -> int: ...

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def check_packing_supported(model: torch.nn.Module) -> None:
    """Packed documents must restart their positions: rotary models take restarting `position_ids`; ALiBi
    models (BLOOM, Poro) read the positions off the block-diagonal mask once sisu prepared them
    (trainer/attention.py, done by `build_model`)."""
    if getattr(model, "sisu_attention", None) is not None:
        return
    if "position_ids" not in inspect.signature(model.forward).parameters:
        raise ValueError(
            f"data.packing needs a model that takes position_ids or an ALiBi model loaded by sisu; "
            f"{type(model).__name__} is neither: set data.packing=false (data.group_by_length=true reduces padding)"
        )


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


def model_inputs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Forward arguments: packed batches carry restarting position ids and a block-diagonal 4D mask (boolean,
    or additive for eager attention, which adds the mask to the scores)."""
    if "packed_mask" in batch:
        mask = batch["packed_mask"]
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": additive_mask(mask) if needs_additive_mask(model) else mask,
            "position_ids": batch["position_ids"],
            "use_cache": False,
        }
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}


def _head_in_forward(model: torch.nn.Module, chunk_size: int | None) -> bool:
    """Whether the LM head can run in chunks on the decoder's output (a bias-free head and a decoder to hook)."""
    head = model.get_output_embeddings()
    return chunk_size is not None and hasattr(model, "get_decoder") and getattr(head, "bias", None) is None


def _on_final_hidden(model: torch.nn.Module, batch: Batch, fn: Any) -> Any:
    """`fn(hidden [B, T, d], head_weight [V, d])`, evaluated inside the model's forward (a hook on the decoder's
    output, where FSDP has the head's weight gathered); the model itself computes logits for one position only."""
    head = model.get_output_embeddings()
    result: dict[str, Any] = {}

    def on_decoder_output(module: torch.nn.Module, args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        result["out"] = fn(hidden, head.weight)

    handle = model.get_decoder().register_forward_hook(on_decoder_output)
    try:
        model(**model_inputs(model, batch), logits_to_keep=1)
    finally:
        handle.remove()
    return result["out"]


def completion_logps(model: torch.nn.Module, batch: Batch, *, chunk_size: int | None) -> torch.Tensor:
    """Per-row sums of the target tokens' log-probs, [rows] float32.

    With `chunk_size`, the LM head runs in chunks inside the model's forward and only on positions with a
    target. Without it, the full logits come from the model as usual.
    """
    if not _head_in_forward(model, chunk_size):
        return sequence_logps(model(**model_inputs(model, batch)).logits, batch["labels"])
    return _on_final_hidden(
        model,
        batch,
        lambda hidden, weight: chunked_sequence_logps(
            hidden,
            weight,
            batch["labels"],
            chunk_size=chunk_size,
            label_positions=batch.get("label_positions"),
        ),
    )


def target_logps(model: torch.nn.Module, batch: Batch, *, chunk_size: int | None) -> torch.Tensor:
    """log p(target_ids[i] | position target_positions[i]) for explicit targets (packed pairs), [N] float32.

    `target_positions` index the flattened [B * T] positions of the batch.
    """
    positions, targets = batch["target_positions"], batch["target_ids"]
    if not _head_in_forward(model, chunk_size):
        logits = model(**model_inputs(model, batch)).logits.flatten(0, 1)[positions].float()
        return logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    return _on_final_hidden(
        model,
        batch,
        lambda hidden, weight: chunked_token_logps(
            hidden.flatten(0, 1)[positions], weight, targets, chunk_size=chunk_size
        ),
    )


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
        self,
        *,
        pad_id: int,
        neftune: NEFTuneHook | None = None,
        chunk_size: int | None = None,
        pack_length: int | None = None,
        rows_per_micro_batch: int = 1,
    ) -> None:
        self.pad_id = pad_id
        self.neftune = neftune
        self.chunk_size = chunk_size
        self.pack_length = pack_length  # None: unpacked
        self.rows_per_micro_batch = rows_per_micro_batch

    @property
    def packed(self) -> bool:
        return self.pack_length is not None

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

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.neftune is not None:
            self.neftune.attention_mask = batch["attention_mask"]
            self.neftune.document_ids = batch.get("document_ids")
        if not _head_in_forward(model, self.chunk_size):
            loss_sum, num_tokens = sft_loss(model(**model_inputs(model, batch)).logits, batch["labels"])
        else:
            loss_sum, num_tokens = _on_final_hidden(
                model,
                batch,
                lambda hidden, weight: chunked_sft_loss(
                    hidden,
                    weight,
                    batch["labels"],
                    chunk_size=self.chunk_size,
                    label_positions=batch.get("label_positions"),
                ),
            )
        return loss_sum, {"loss_sum": loss_sum.detach(), "num_tokens": num_tokens}
