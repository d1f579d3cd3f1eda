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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.batching import PairBatching
from data.files import temp_file
from data.pipeline import DataBundle
from runtime.attention import check_packing_supported
from runtime.builder import build_sharded_model
from runtime.distributed import DistInfo, reduce_tensor, reduce_values
from runtime.fingerprint import model_fingerprint
from runtime.profiling import named_range
from runtime.settings import ModelConfig
from trainer.forward import pair_logps
from trainer.jobs import DPOConfig
from trainer.objectives import DPOObjective
from trainer.steps import dry_run_plan, pack_length
from trainer.trainer import Trainer

logger = logging.getLogger("sisu")


def resolve_reference_mode(cfg: DPOConfig) -> str:
    """auto: precompute when the data is seen more than once (epochs > 1), else live."""
    if cfg.reference.mode != "auto":
        return cfg.reference.mode
    return "precompute" if cfg.train.epochs > 1 else "live"


def reference_model_config(cfg: DPOConfig) -> ModelConfig:
    if cfg.reference.path is None:
        return cfg.model
    return ModelConfig(**{**cfg.model.__dict__, "path": cfg.reference.path, "init_config": None})


def reference_cache_path(
    output_dir: str | os.PathLike, bundle: DataBundle, fingerprint: str, settings: str
) -> Path:
    """Keyed by the tokenized data's key (it covers the sources' bytes, tokenizer, template and settings: the
    examples), the reference model's fingerprint and the settings that change its log-probs."""
    digest = hashlib.sha256()
    digest.update(fingerprint.encode())
    digest.update(settings.encode())
    digest.update(bundle.key.encode())
    return Path(output_dir) / "reference_logps" / f"{digest.hexdigest()[:24]}.pt"


@torch.no_grad()
def precompute_reference_logps(
    reference: torch.nn.Module,
    bundle: DataBundle,
    *,
    batching: PairBatching,
    info: DistInfo,
    micro_batch_size: int,
    chunk_size: int | None,
    pairs_per_round: int = 64,
) -> torch.Tensor:
    """[N, 2] (chosen, rejected) reference log-probs of every example, identical on all ranks.

    Ranks take interleaved shares, longest first, batched (and packed) as in training by `batching`, a round of
    `pairs_per_round` pairs at a time. Every rank runs the same number of forwards in every round (FSDP needs all
    ranks in each collective; a rank with less work runs filler batches), and the results are summed. The
    log-probs stay on the device until the end.
    """
    num = len(bundle.dataset)
    interleaved = np.arange(info.rank, num, info.world_size)
    mine = interleaved[np.argsort(-bundle.lengths()[interleaved], kind="stable")].tolist()  # longest first
    per_rank = -(-num // info.world_size)
    out = torch.zeros(num, 2, dtype=torch.float64, device=info.device)
    for start in range(0, per_rank, pairs_per_round):
        chunk = mine[start : start + pairs_per_round]
        groups = [chunk[i : i + micro_batch_size] for i in range(0, len(chunk), micro_batch_size)]
        batches = batching.micro_batches(bundle.dataset, groups)
        count = int(reduce_values([len(batches)], op="max")[0])
        batches += [batching.filler_batch() for _ in range(count - len(batches))]
        for batch in batches:
            batch = {k: v.to(info.device, non_blocking=True) for k, v in batch.items()}
            with named_range("reference_forward"):
                chosen, rejected = pair_logps(reference, batch, chunk_size=chunk_size)
            out[batch["index"]] = torch.stack([chosen, rejected], dim=1).double()
    return reduce_tensor(out).cpu()


def _save_tensor(tensor: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent, prefix=".ref-")
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
) -> tuple[PairBatching, DPOObjective]:
    mode = resolve_reference_mode(cfg)
    ref_cfg = reference_model_config(cfg)
    batching = PairBatching(
        pad_id=tokenizer.pad_token_id,
        pack_length=pack_length(cfg, kind="preference"),  # as wide as an unpacked pair: every pair fits
        rows_per_micro_batch=cfg.train.micro_batch_size,
    )
    loss = {
        "beta": cfg.dpo.beta,
        "loss_type": cfg.dpo.loss_type,
        "label_smoothing": cfg.dpo.label_smoothing,
        "chunk_size": cfg.train.loss_chunk_size,
    }
    if cfg.data.packing:
        check_packing_supported(model)

    def build_reference() -> torch.nn.Module:
        return build_sharded_model(
            ref_cfg,
            cfg.train.sharding(),
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
        return batching, DPOObjective(**loss, reference=build_reference())
    settings = json.dumps([cfg.train.mixed_precision, str(info.device.type)])
    path = reference_cache_path(cfg.output_dir, bundle, model_fingerprint(ref_cfg, seed=cfg.seed), settings)
    if path.is_file():
        logps = torch.load(path, weights_only=True)
        logger.info("reference log-probs: reusing %s", path)
    else:
        reference = build_reference()
        logger.info("reference log-probs: computing %d pairs once", len(bundle.dataset))
        logps = precompute_reference_logps(
            reference,
            bundle,
            batching=batching,
            info=info,
            micro_batch_size=cfg.train.micro_batch_size,
            chunk_size=cfg.train.loss_chunk_size,
        )
        del reference
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if info.is_main:
            _save_tensor(logps, path)
            logger.info("reference log-probs: stored in %s; reference model freed", path)
    return batching, DPOObjective(**loss, reference_logps=logps.to(info.device))


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
