"""FSDP2 sharding: one group per decoder block plus the root, mixed precision, activation checkpointing.

The root group holds the embeddings and the LM head, so tied input/output embeddings (SmolLM2) stay one
parameter in one group: recent torch rejects a parameter shared across two FSDP groups, and an untied copy
would silently receive only half of its gradient.

Gradients are reduced with SUM and no division: the loss is already normalised by the global number of target
tokens of the step, so summing per-rank gradients gives the exact full-batch gradient. This also avoids gloo's
broken AVG reduce-scatter (pytorch#162338).
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard

from runtime.model import decoder_blocks

logger = logging.getLogger("sisu")


def mixed_precision_policy(mode: str, device: torch.device) -> MixedPrecisionPolicy | None:
    """auto: bf16 compute with fp32 reductions on GPU, plain fp32 on CPU."""
    if mode == "bf16" or (mode == "auto" and device.type == "cuda"):
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return None


def apply_activation_checkpointing(model: torch.nn.Module) -> int:
    """Wrap every decoder block so its activations are recomputed in backward; returns the block count."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    blocks = decoder_blocks(model)
    for parent, attr, block in blocks:
        setattr(parent, attr, checkpoint_wrapper(block, preserve_rng_state=False))
    return len(blocks)


def shard_model(
    model: torch.nn.Module,
    *,
    device: torch.device,
    mixed_precision: str = "auto",
    reshard_after_forward: bool = True,
    cpu_offload: bool = False,
    compile_blocks: bool = False,
    trainable: bool = True,
    prefetch_blocks: int = 0,
) -> torch.nn.Module:
    """fully_shard each decoder block, then the root. Returns the (same, now FSDP) model.

    A trainable model keeps its root (embeddings, final norm, LM head) gathered between forward and backward;
    a frozen one (DPO reference, generation) has no backward and reshards everything after forward."""
    assert dist.is_initialized(), "init_distributed() must run before shard_model()"
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    kwargs = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    policy = mixed_precision_policy(mixed_precision, device)
    if policy is not None:
        kwargs["mp_policy"] = policy
    if cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    blocks = decoder_blocks(model)
    for _parent, _attr, block in blocks:
        if compile_blocks:
            block.compile()
        fully_shard(block, **kwargs)
    # Backward needs the root's parameters (LM head) right away: keep them gathered when training.
    fully_shard(model, **{**kwargs, "reshard_after_forward": not trainable})
    if prefetch_blocks:
        set_prefetching([block for _parent, _attr, block in blocks], prefetch_blocks, backward=trainable)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return model


def set_prefetching(blocks: list[torch.nn.Module], num: int, *, backward: bool) -> None:
    """Block i issues the all-gathers of blocks i+1..i+num when its forward starts (and of i-1..i-num when its
    backward starts), so communication overlaps the compute of the current block."""
    for i, block in enumerate(blocks):
        block.set_modules_to_forward_prefetch(blocks[i + 1 : i + 1 + num])
        if backward:
            block.set_modules_to_backward_prefetch(blocks[max(0, i - num) : i][::-1])


def tied_embeddings(model: torch.nn.Module) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight
