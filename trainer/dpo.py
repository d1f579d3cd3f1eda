"""Direct preference optimisation against a frozen reference model, on the shared trainer.

The reference is sharded with FSDP2 on the same mesh as the policy (so a 34B pair fits where the policy
fits), kept in eval mode without gradients or optimizer state. With `reference.mode: precompute` it runs once
over the whole dataset before training; its log-probabilities are stored under OUTPUT_DIR/reference_logps/,
keyed by a hash of the tokenized data and the reference model, reused in every epoch and after a resume, and the
reference model is freed before the first step.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from data.collate import collate_preference
from data.packing import collate_packed_pairs, pair_length, plan_micro_batches
from data.pipeline import DataBundle
from data.tokenize import PreferenceExample
from losses import dpo_loss
from trainer.builder import build_sharded_model
from trainer.distributed import DistInfo, reduce_tensor, reduce_values
from trainer.jobs import DPOConfig, ModelConfig
from trainer.profiling import named_range
from trainer.tasks import (
    Batch,
    check_packing_supported,
    completion_logps,
    filler_inputs,
    target_logps,
    with_label_positions,
)
from trainer.trainer import Trainer, dry_run_plan, pack_length

logger = logging.getLogger("sisu")

METRIC_SUMS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


def resolve_reference_mode(cfg: DPOConfig) -> str:
    """auto: precompute when the data is seen more than once (epochs > 1), else live."""
    if cfg.reference.mode != "auto":
        return cfg.reference.mode
    return "precompute" if cfg.train.epochs > 1 else "live"


def reference_model_config(cfg: DPOConfig) -> ModelConfig:
    if cfg.reference.path is None:
        return cfg.model
    return ModelConfig(**{**cfg.model.__dict__, "path": cfg.reference.path, "init_config": None})


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


class DPOTask:
    kind = "preference"
    count_name = "num_pairs"

    def __init__(
        self,
        *,
        pad_id: int,
        beta: float,
        loss_type: str,
        label_smoothing: float,
        reference: torch.nn.Module | None = None,
        reference_logps: torch.Tensor | None = None,
        chunk_size: int | None = None,
        pack_length: int | None = None,
        rows_per_micro_batch: int = 1,
    ) -> None:
        assert (reference is None) != (reference_logps is None), (
            "need exactly one of a live or precomputed reference"
        )
        self.pad_id = pad_id
        self.beta = beta
        self.loss_type = loss_type
        self.label_smoothing = label_smoothing
        self.reference = reference
        self.reference_logps = reference_logps  # [N, 2] float64 on the training device: chosen, rejected
        self.chunk_size = chunk_size
        self.pack_length = pack_length  # None: unpacked; else rows of this many tokens
        self.rows_per_micro_batch = rows_per_micro_batch

    @property
    def packed(self) -> bool:
        return self.pack_length is not None

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

    def normaliser(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["index"].numel())

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
        return {key: totals[key] / max(normaliser, 1.0) for key in METRIC_SUMS}


def model_fingerprint(model_cfg: ModelConfig, *, seed: int) -> str:
    """Identity of the reference weights: the init config and seed, or the weight files' names, sizes and mtimes."""
    if model_cfg.init_config is not None:
        return json.dumps({"init_config": model_cfg.init_config, "seed": seed}, sort_keys=True, default=str)
    assert model_cfg.path is not None
    path = Path(os.path.expanduser(model_cfg.path))
    if not path.is_dir():
        return json.dumps({"hub": model_cfg.path})
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
    return json.dumps([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files])


def reference_cache_path(
    output_dir: str | os.PathLike, bundle: DataBundle, fingerprint: str, settings: str
) -> Path:
    digest = hashlib.sha256()
    digest.update(fingerprint.encode())
    digest.update(settings.encode())
    for example in bundle.examples:
        digest.update(json.dumps([example.prompt_ids, example.chosen_ids, example.rejected_ids]).encode())
    return Path(output_dir) / "reference_logps" / f"{digest.hexdigest()[:24]}.pt"


@torch.no_grad()
def precompute_reference_logps(
    reference: torch.nn.Module,
    bundle: DataBundle,
    *,
    task: DPOTask,
    info: DistInfo,
    micro_batch_size: int,
    pairs_per_round: int = 64,
) -> torch.Tensor:
    """[N, 2] (chosen, rejected) reference log-probs of every example, identical on all ranks.

    Ranks take interleaved shares, longest first, batched (and packed) as in training by `task`, a round of
    `pairs_per_round` pairs at a time. Every rank runs the same number of forwards in every round (FSDP needs all
    ranks in each collective; a rank with less work runs filler batches), and the results are summed. The
    log-probs stay on the device until the end.
    """
    num = len(bundle.examples)
    mine = sorted(range(info.rank, num, info.world_size), key=lambda i: -bundle.examples[i].length)
    per_rank = -(-num // info.world_size)
    out = torch.zeros(num, 2, dtype=torch.float64, device=info.device)
    for start in range(0, per_rank, pairs_per_round):
        chunk = mine[start : start + pairs_per_round]
        groups = [chunk[i : i + micro_batch_size] for i in range(0, len(chunk), micro_batch_size)]
        batches = task.micro_batches(bundle.examples, groups)
        count = int(reduce_values([len(batches)], op="max")[0])
        batches += [task.filler_batch() for _ in range(count - len(batches))]
        for batch in batches:
            batch = {k: v.to(info.device, non_blocking=True) for k, v in batch.items()}
            with named_range("reference_forward"):
                chosen, rejected = pair_logps(reference, batch, chunk_size=task.chunk_size)
            out[batch["index"]] = torch.stack([chosen, rejected], dim=1).double()
    return reduce_tensor(out).cpu()


def _save_tensor(tensor: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ref-", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        torch.save(tensor, handle)
    os.replace(tmp, path)


def make_dpo_task(
    cfg: DPOConfig,
    *,
    tokenizer: Any,
    model: Any,
    bundle: DataBundle,
    info: DistInfo,
    new_token_ids: Sequence[int] = (),
) -> DPOTask:
    mode = resolve_reference_mode(cfg)
    ref_cfg = reference_model_config(cfg)
    common = {
        "pad_id": tokenizer.pad_token_id,
        "beta": cfg.dpo.beta,
        "loss_type": cfg.dpo.loss_type,
        "label_smoothing": cfg.dpo.label_smoothing,
        "chunk_size": cfg.train.loss_chunk_size,
        "pack_length": pack_length(
            cfg, kind="preference"
        ),  # as wide as an unpacked pair (two rows of max_seq_len): every pair fits
        "rows_per_micro_batch": cfg.train.micro_batch_size,
    }
    if cfg.data.packing:
        check_packing_supported(model)

    def build_reference() -> torch.nn.Module:
        return build_sharded_model(
            ref_cfg,
            cfg.train,
            info=info,
            vocab_size=len(tokenizer),
            seed=cfg.seed,
            trainable=False,
            new_token_ids=new_token_ids,
        )

    logger.info(
        "reference: mode %s, weights %s", mode, ref_cfg.path or "random init (same seed as the policy)"
    )
    if mode == "live":
        return DPOTask(**common, reference=build_reference())
    settings = json.dumps([cfg.train.mixed_precision, str(info.device.type)])
    path = reference_cache_path(cfg.output_dir, bundle, model_fingerprint(ref_cfg, seed=cfg.seed), settings)
    if path.is_file():
        logps = torch.load(path, weights_only=True)
        logger.info("reference log-probs: reusing %s", path)
    else:
        reference = build_reference()
        logger.info("reference log-probs: computing %d pairs once", len(bundle.examples))
        logps = precompute_reference_logps(
            reference,
            bundle,
            task=DPOTask(**common, reference_logps=torch.zeros(0, 2)),
            info=info,
            micro_batch_size=cfg.train.micro_batch_size,
        )
        del reference
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if info.is_main:
            _save_tensor(logps, path)
            logger.info("reference log-probs: stored in %s; reference model freed", path)
    return DPOTask(**common, reference_logps=logps.to(info.device))


def run_dpo(cfg: DPOConfig) -> None:
    trainer = Trainer(cfg, make_task=lambda **kw: make_dpo_task(cfg, **kw), expect="preference")
    try:
        trainer.setup()
        trainer.train()
    finally:
        trainer.close()


def dry_run_dpo(cfg: DPOConfig, world_size: int) -> list[str]:
    lines = dry_run_plan(cfg, expect="preference", world_size=world_size)
    lines.append(
        f"dpo: beta {cfg.dpo.beta}, loss {cfg.dpo.loss_type}, label smoothing {cfg.dpo.label_smoothing}; "
        f"reference {cfg.reference.path or cfg.model.path or 'init_config'} ({resolve_reference_mode(cfg)})"
    )
    return lines
