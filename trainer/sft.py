"""Supervised fine-tuning: the SFT task on the shared trainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data.batching import SFTBatching
from runtime.attention import check_packing_supported
from trainer.jobs import SFTConfig
from trainer.objectives import NEFTuneHook, SFTObjective
from trainer.steps import dry_run_plan, pack_length
from trainer.trainer import Trainer


def make_sft_task(
    cfg: SFTConfig, *, tokenizer: Any, model: Any, bundle: Any, info: Any, new_token_ids: Sequence[int] = ()
) -> tuple[SFTBatching, SFTObjective]:
    alpha = cfg.train.neftune_alpha
    neftune = NEFTuneHook(model.get_input_embeddings(), alpha) if alpha else None
    if cfg.data.packing:
        check_packing_supported(model)
    batching = SFTBatching(
        pad_id=tokenizer.pad_token_id,
        pack_length=pack_length(cfg, kind="sft"),
        rows_per_micro_batch=cfg.train.micro_batch_size,
    )
    return batching, SFTObjective(neftune=neftune, chunk_size=cfg.train.loss_chunk_size)


def run_sft(cfg: SFTConfig) -> None:
    trainer = Trainer(
        cfg,
        make_task=lambda **kw: make_sft_task(cfg, **kw),
        expect="sft",
    )
    try:
        trainer.setup()
        trainer.train()
    finally:
        trainer.close()


def dry_run_sft(cfg: SFTConfig, world_size: int) -> list[str]:
    return dry_run_plan(cfg, expect="sft", world_size=world_size)
