"""The model's forward for the losses: its inputs (padded or packed batches), the LM head run in chunks inside
the forward where only target positions need logits, and the log-probabilities of targets (per row, per
explicit target, per preference pair)."""

from __future__ import annotations

from typing import Any

import torch

from data.batching import Batch
from losses import sequence_logps
from losses.chunked import chunked_sequence_logps, chunked_token_logps
from runtime.attention import additive_mask, needs_additive_mask


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


def head_runs_in_chunks(model: torch.nn.Module, chunk_size: int | None) -> bool:
    """Whether the LM head can run in chunks on the decoder's output (a bias-free head and a decoder to hook)."""
    head = model.get_output_embeddings()
    return chunk_size is not None and hasattr(model, "get_decoder") and getattr(head, "bias", None) is None


def on_final_hidden(model: torch.nn.Module, batch: Batch, fn: Any) -> Any:
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
    if not head_runs_in_chunks(model, chunk_size):
        return sequence_logps(model(**model_inputs(model, batch)).logits, batch["labels"])
    return on_final_hidden(
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
    if not head_runs_in_chunks(model, chunk_size):
        logits = model(**model_inputs(model, batch)).logits.flatten(0, 1)[positions].float()
        return logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)
    return on_final_hidden(
        model,
        batch,
        lambda hidden, weight: chunked_token_logps(
            hidden.flatten(0, 1)[positions], weight, targets, chunk_size=chunk_size
        ),
    )


def pair_logps(
    model: torch.nn.Module, batch: Batch, *, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs of each pair's chosen and rejected completion: ([K], [K]) for the K pairs of
    the batch, in the order of `batch["index"]`. Unpacked batches hold the chosen rows first, then the rejected
    rows; packed batches carry explicit targets (`data.packing.collate_packed_pairs`)."""
    if "target_positions" not in batch:
        logps = completion_logps(model, batch, chunk_size=chunk_size)
        half = logps.shape[0] // 2
        return logps[:half], logps[half:]
    tokens = target_logps(model, batch, chunk_size=chunk_size)
    sums = torch.zeros(2 * batch["index"].numel(), dtype=tokens.dtype, device=tokens.device)
    sums = sums.index_add(0, batch["target_segments"], tokens)
    return sums[0::2], sums[1::2]
