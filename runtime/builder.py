"""Model construction for a run: load or initialise, optionally freeze, shard with FSDP2, place on the device."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import torch

from data.errors import ConfigError
from runtime.distributed import DistInfo, broadcast_
from runtime.model import build_model
from runtime.parallel import apply_activation_checkpointing, shard_model, tied_embeddings
from runtime.settings import ModelConfig
from runtime.vocab import init_new_rows

logger = logging.getLogger("sisu")


@dataclasses.dataclass(frozen=True)
class ShardingSettings:
    """How a model is sharded and run: FSDP2's switches and the compute precision (training takes them from
    `train.*`, trainer/jobs.py; generation uses the defaults)."""

    mixed_precision: str = "auto"  # auto: bf16 compute on GPU, fp32 on CPU
    activation_checkpointing: bool = False
    reshard_after_forward: bool = True
    cpu_offload: bool = False
    compile: bool = False
    prefetch_blocks: int = 0


def build_sharded_model(
    model_cfg: ModelConfig,
    sharding: ShardingSettings,
    *,
    info: DistInfo,
    vocab_size: int,
    seed: int,
    trainable: bool = True,
    new_token_ids: Sequence[int] = (),
) -> torch.nn.Module:
    """The model of `model_cfg`, sharded over all ranks. A frozen model (`trainable=False`, the DPO reference)
    has no gradients, stays in eval mode and skips activation checkpointing.

    With weights and several ranks, only rank 0 reads them; the others build a skeleton on the meta device and
    receive their shards by broadcast, so no rank holds a per-rank full copy of a 34B model in host memory.
    Random init (`model.init_config`) is seeded identically on every rank. Tokens the run added to the tokenizer
    (`new_token_ids`: a chat template's markers) get embedding rows as described in runtime/vocab.py.
    """
    from_weights = model_cfg.init_config is None
    broadcast = from_weights and info.world_size > 1
    device = "meta" if broadcast and not info.is_main else "cpu"
    torch.manual_seed(seed)
    model = build_model(model_cfg, vocab_size=vocab_size, device=device)
    rows = model.get_input_embeddings().num_embeddings
    if rows + len(new_token_ids) < vocab_size:
        raise ConfigError(
            f"the model has {rows} embedding rows but the tokenizer has {vocab_size} tokens: the tokenizer does not "
            "belong to the model (check model.tokenizer, or the vocab_size of model.init_config)"
        )
    init_new_rows(model, vocab_size=vocab_size, new_ids=list(new_token_ids))
    full_state = model.state_dict() if broadcast and info.is_main else None
    model.config.use_cache = False
    if not trainable:
        model.requires_grad_(False)
    elif sharding.activation_checkpointing:
        apply_activation_checkpointing(model)
    shard_model(
        model,
        device=info.device,
        mixed_precision=sharding.mixed_precision,
        reshard_after_forward=sharding.reshard_after_forward,
        cpu_offload=sharding.cpu_offload and trainable,
        compile_blocks=sharding.compile,
        trainable=trainable,
        prefetch_blocks=sharding.prefetch_blocks,
    )
    if broadcast:
        _receive_weights(model, full_state, info=info)
    else:
        model.to(info.device)
    model.train(trainable)
    if info.is_main:
        logger.info(
            "%s: %s, %.1fM parameters, tied embeddings: %s, activation checkpointing: %s",
            "model" if trainable else "reference (frozen)",
            type(model).__name__,
            sum(p.numel() for p in model.parameters()) / 1e6,
            tied_embeddings(model),
            sharding.activation_checkpointing and trainable,
        )
    return model


def _receive_weights(model: torch.nn.Module, full_state: dict | None, *, info: DistInfo) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if not info.is_main:
        model.to_empty(device=info.device)
    set_model_state_dict(
        model,
        full_state if full_state is not None else {},
        options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True),
    )
    # Non-persistent buffers (rotary frequencies) are not in the state dict: rank 0 has the real values.
    persistent = set(model.state_dict().keys())
    for name, buffer in model.named_buffers():
        if name not in persistent:
            broadcast_(buffer, src=0)
