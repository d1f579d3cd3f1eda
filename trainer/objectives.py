"""The objective of a micro-batch: SFT's summed token cross-entropy, or DPO's summed pair losses against a frozen
reference (live, or log-probs precomputed once). `loss` returns the sum and its statistics as 0-dim tensors left
on the device; the trainer divides by the step's global count (`normaliser`, see data/batching.py) and sums
the statistics there, bringing them to the host once per step; `step_metrics` turns the step's summed
statistics into the metrics logged besides the loss."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from data.batching import Batch
from losses import dpo_loss, neftune_noise, sft_loss
from losses.chunked import chunked_sft_loss
from runtime.profiling import named_range
from trainer.forward import head_runs_in_chunks, model_inputs, on_final_hidden, pair_logps

DPO_METRIC_SUMS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


class Objective(Protocol):
    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def step_metrics(self, totals: dict[str, float], normaliser: float) -> dict[str, float]: ...


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


class SFTObjective:
    """Summed next-token cross-entropy of the target tokens (NEFTune noise on the embeddings when set)."""

    def __init__(self, *, neftune: NEFTuneHook | None = None, chunk_size: int | None = None) -> None:
        self.neftune = neftune
        self.chunk_size = chunk_size

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.neftune is not None:
            self.neftune.attention_mask = batch["attention_mask"]
            self.neftune.document_ids = batch.get("document_ids")
        if not head_runs_in_chunks(model, self.chunk_size):
            loss_sum, num_tokens = sft_loss(model(**model_inputs(model, batch)).logits, batch["labels"])
        else:
            loss_sum, num_tokens = on_final_hidden(
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

    def step_metrics(self, totals: dict[str, float], normaliser: float) -> dict[str, float]:
        return {}


class DPOObjective:
    """Summed DPO losses of the pairs of a micro-batch, against a live `reference` model or `reference_logps`
    [N, 2] (chosen, rejected) precomputed for every pair of the dataset, on the training device."""

    def __init__(
        self,
        *,
        beta: float,
        loss_type: str,
        label_smoothing: float,
        reference: torch.nn.Module | None = None,
        reference_logps: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> None:
        assert (reference is None) != (reference_logps is None), (
            "need exactly one of a live or precomputed reference"
        )
        self.beta = beta
        self.loss_type = loss_type
        self.label_smoothing = label_smoothing
        self.reference = reference
        self.reference_logps = reference_logps
        self.chunk_size = chunk_size

    def loss(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        policy_chosen, policy_rejected = pair_logps(model, batch, chunk_size=self.chunk_size)
        if self.reference is not None:
            with torch.no_grad(), named_range("reference_forward"):
                ref_chosen, ref_rejected = pair_logps(self.reference, batch, chunk_size=self.chunk_size)
        else:
            stored = self.reference_logps[batch["index"]].to(policy_chosen.dtype)
            ref_chosen, ref_rejected = stored[:, 0], stored[:, 1]
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            policy_chosen,
            policy_rejected,
            ref_chosen,
            ref_rejected,
            beta=self.beta,
            loss_type=self.loss_type,
            label_smoothing=self.label_smoothing,
        )
        loss_sum = losses.sum()
        stats = {
            "loss_sum": loss_sum.detach(),
            "rewards/chosen": chosen_rewards.sum(),
            "rewards/rejected": rejected_rewards.sum(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().sum(),
            "rewards/margins": (chosen_rewards - rejected_rewards).sum(),
            "logps/chosen": policy_chosen.detach().sum(),
            "logps/rejected": policy_rejected.detach().sum(),
        }
        return loss_sum, stats

    def step_metrics(self, totals: dict[str, float], normaliser: float) -> dict[str, float]:
        return {key: totals[key] / max(normaliser, 1.0) for key in DPO_METRIC_SUMS}
