"""How a training run splits into optimizer steps (`StepPlan`), printed at start and by --dry-run."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from data.errors import ConfigError, Unreachable
from data.pipeline import DRY_RUN_RECORDS, build_dataset
from data.sampler import check_batch_sizes
from runtime.model import prepare_tokenizer


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """How a run splits into optimizer steps; printed at start and by --dry-run."""

    world_size: int
    num_nodes: int
    micro_batch_size: int
    global_batch_size: int
    grad_accum: int
    num_examples: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    dropped_per_epoch: int
    tokens_per_step: float
    warmup_steps: int
    pack_length: int | None = None  # packed rows of this many tokens; None: unpacked

    def lines(self) -> list[str]:
        packing = (
            [
                f"packing: each step's examples in rows of {self.pack_length} tokens, {self.micro_batch_size} "
                "row(s) per micro-batch (the micro-batches per step vary with the data; all ranks run the same "
                "number)"
            ]
            if self.pack_length
            else []
        )
        return [
            f"world size {self.world_size} ({self.num_nodes} node(s)); micro batch {self.micro_batch_size}, "
            f"global batch {self.global_batch_size}, gradient accumulation {self.grad_accum}",
            f"{self.num_examples} examples: {self.steps_per_epoch} steps per epoch "
            f"({self.dropped_per_epoch} examples beyond the last full global batch are left out each epoch), "
            f"{self.epochs} epoch(s), {self.total_steps} optimizer steps, {self.warmup_steps} warmup",
            f"about {self.tokens_per_step:.0f} tokens per optimizer step (mean example length x global batch)",
            *packing,
        ]


def plan_steps(
    cfg: Any, *, kind: str, num_examples: int, mean_length: float, world_size: int, num_nodes: int = 1
) -> StepPlan:
    train = cfg.train
    grad_accum = check_batch_sizes(
        global_batch_size=train.global_batch_size,
        micro_batch_size=train.micro_batch_size,
        world_size=world_size,
    )
    steps_per_epoch = num_examples // train.global_batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"only {num_examples} examples: fewer than one global batch ({train.global_batch_size}); "
            "lower train.global_batch_size or add data"
        )
    total = train.max_steps if train.max_steps is not None else steps_per_epoch * train.epochs
    epochs = math.ceil(total / steps_per_epoch)
    return StepPlan(
        world_size=world_size,
        num_nodes=num_nodes,
        micro_batch_size=train.micro_batch_size,
        global_batch_size=train.global_batch_size,
        grad_accum=grad_accum,
        num_examples=num_examples,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        total_steps=total,
        dropped_per_epoch=num_examples - steps_per_epoch * train.global_batch_size,
        tokens_per_step=mean_length * train.global_batch_size,
        warmup_steps=math.ceil(cfg.optim.warmup_ratio * total),
        pack_length=pack_length(cfg, kind=kind),
    )


def pack_length(cfg: Any, *, kind: str) -> int | None:
    """Packed row length: SFT rows of max_seq_len; preference rows of twice that (an unpacked pair's two rows,
    so every pair fits)."""
    if not cfg.data.packing:
        return None
    return cfg.train.max_seq_len * (2 if kind == "preference" else 1)


def dry_run_plan(cfg: Any, *, expect: str, world_size: int) -> list[str]:
    """What --dry-run prints: validates, loads what is reachable (local files, cached hub data), never downloads.
    Step counts from a sample of the data are estimates, and say so."""
    grad_accum = check_batch_sizes(
        global_batch_size=cfg.train.global_batch_size,
        micro_batch_size=cfg.train.micro_batch_size,
        world_size=world_size,
    )
    lines = [
        f"config valid; output_dir {cfg.output_dir}",
        f"world size {world_size}; micro batch {cfg.train.micro_batch_size}, global batch "
        f"{cfg.train.global_batch_size}, gradient accumulation {grad_accum}",
    ]
    try:
        tokenizer, template, new_ids = prepare_tokenizer(cfg.model, cfg.data.template)
        bundle = build_dataset(
            cfg.data,
            tokenizer=tokenizer,
            max_seq_len=cfg.train.max_seq_len,
            expect=expect,
            tokenize_at_most=DRY_RUN_RECORDS,
        )
    except (
        Unreachable
    ) as exc:  # only what a node with the hub (or its cache) could load; every other error stops
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        lines.append(f"not reachable from here, so no data statistics or step counts: {reason}")
        return lines
    lines.append(
        f"chat template: {template.name} (end of turn {template.end_of_turn!r})"
        + (f"; adds {len(new_ids)} marker token(s) to the tokenizer" if new_ids else "")
    )
    lines += bundle.summary_lines()
    lengths = bundle.lengths()
    plan = plan_steps(
        cfg,
        kind=expect,
        num_examples=bundle.estimated_examples(),
        mean_length=float(lengths.mean()),
        world_size=world_size,
    )
    lines += plan.lines()
    if bundle.sampled_from is not None:
        lines.append("the example and step counts above are estimates, scaled from the tokenized sample")
    return lines
