"""The FSDP2 training loop shared by SFT and DPO, readable top to bottom:

runtime -> config on disk -> tokenizer and data -> plan -> model (sharded) -> optimizer -> resume
-> for each optimizer step: micro-batches, global normaliser, forward/backward, clip, step, log, checkpoint
-> Hugging Face export
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from data.pipeline import DataBundle, build_dataset
from data.sampler import StepSampler
from trainer import checkpoint as ckpt
from trainer.attention import attention_name
from trainer.builder import build_sharded_model
from trainer.config import write_config
from trainer.devices import detect_device_name, peak_flops
from trainer.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    rank,
    reduce_tensor,
    reduce_values,
    seed_everything,
    setup_logging,
    stack_values,
    teardown,
)
from trainer.memory_plan import model_flops_per_token
from trainer.metrics import MetricsLogger, Timer, current_rss_bytes, peak_memory_bytes, truncate_metrics
from trainer.model import DTYPES, prepare_tokenizer
from trainer.optim import build_optimizer, lr_at, set_lr
from trainer.parallel import mixed_precision_policy
from trainer.profiling import StepProfiler, named_range
from trainer.tasks import Task

logger = logging.getLogger("sisu")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a run splits into steps; printed at start and by --dry-run."""

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


def make_plan(
    cfg: Any, *, kind: str, num_examples: int, mean_length: float, world_size: int, num_nodes: int = 1
) -> Plan:
    train = cfg.train
    per_step = train.micro_batch_size * world_size
    if train.global_batch_size % per_step:
        raise ValueError(
            f"train.global_batch_size ({train.global_batch_size}) must be a multiple of train.micro_batch_size "
            f"({train.micro_batch_size}) x world size ({world_size}) = {per_step}"
        )
    steps_per_epoch = num_examples // train.global_batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"only {num_examples} examples: fewer than one global batch ({train.global_batch_size}); "
            "lower train.global_batch_size or add data"
        )
    total = train.max_steps if train.max_steps is not None else steps_per_epoch * train.epochs
    epochs = math.ceil(total / steps_per_epoch)
    return Plan(
        world_size=world_size,
        num_nodes=num_nodes,
        micro_batch_size=train.micro_batch_size,
        global_batch_size=train.global_batch_size,
        grad_accum=train.global_batch_size // per_step,
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


def export_dtype(cfg: Any, device: torch.device) -> torch.dtype:
    """`checkpoint.export_dtype`; auto = the compute dtype (bf16 under mixed precision, else the stored dtype)."""
    if cfg.checkpoint.export_dtype != "auto":
        return DTYPES[cfg.checkpoint.export_dtype]
    policy = mixed_precision_policy(cfg.train.mixed_precision, device)
    if policy is not None:
        return policy.param_dtype
    return DTYPES.get(cfg.model.dtype, torch.float32)


def check_same_template(saved: dict[str, Any], current: dict[str, Any], *, path: Path) -> None:
    """Refuse to resume a checkpoint trained with another chat template or other added tokens."""
    before = saved.get("chat_template")
    if before is None:  # a checkpoint written before sisu recorded the template
        return
    for key, what in (("source", "chat template"), ("added_tokens", "set of tokens added for the template")):
        if before.get(key) != current.get(key):
            raise ValueError(
                f"{path} was trained with a different {what} ({before.get('name')!r}, end of turn "
                f"{before.get('end_of_turn')!r}) than this run resolves ({current.get('name')!r}); set "
                "data.template (and model.tokenizer) as in that run, or resume=none to start over"
            )


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite steps; the message is one line for the user."""


class StopRequested(Exception):
    """SIGTERM/SIGUSR1 arrived: the current step finished and a checkpoint was written."""


class Trainer:
    """Runs one training job. `make_task(tokenizer, model, bundle, info, new_token_ids)` supplies the SFT or DPO
    specifics."""

    def __init__(self, cfg: Any, *, make_task: Callable[..., Task], expect: str) -> None:
        self.cfg = cfg
        self.make_task = make_task
        self.expect = expect
        self.output_dir = Path(cfg.output_dir)
        self._stop_signal: int | None = None

    # -- setup -------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        self.info: DistInfo = init_distributed(
            backend=cfg.distributed.backend, timeout_minutes=cfg.distributed.timeout_minutes
        )
        log_dir = self.output_dir / "logs" if cfg.logging.per_rank_files else None
        setup_logging(rank=self.info.rank, level=cfg.logging.level, log_dir=log_dir)
        seed_everything(cfg.seed)
        if self.info.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_config(cfg, self.output_dir / "config.yaml")
        self.tokenizer, self.template, self.new_token_ids = prepare_tokenizer(cfg.model, cfg.data.template)
        if self.info.is_main:
            logger.info(
                "chat template: %s (end of turn %r)%s",
                self.template.name,
                self.template.end_of_turn,
                f"; markers added as tokens {self.new_token_ids}" if self.new_token_ids else "",
            )
        self.bundle: DataBundle = self._load_data()
        self.sampler = StepSampler(
            self.bundle.lengths(),
            global_batch_size=cfg.train.global_batch_size,
            micro_batch_size=cfg.train.micro_batch_size,
            rank=self.info.rank,
            world_size=self.info.world_size,
            seed=cfg.seed,
            shuffle=cfg.data.shuffle,
            group_by_length=cfg.data.group_by_length,
        )
        lengths = self.bundle.lengths()
        self.plan = make_plan(
            cfg,
            kind=self.expect,
            num_examples=len(lengths),
            mean_length=sum(lengths) / len(lengths),
            world_size=self.info.world_size,
            num_nodes=self.info.num_nodes,
        )
        for line in self.plan.lines():
            logger.info("plan: %s", line)
        self.model = build_sharded_model(
            cfg.model,
            cfg.train,
            info=self.info,
            vocab_size=len(self.tokenizer),
            seed=cfg.seed,
            new_token_ids=self.new_token_ids,
        )
        if self.info.is_main:
            logger.info("attention: %s", attention_name(self.model))
        self.task = self.make_task(
            tokenizer=self.tokenizer,
            model=self.model,
            bundle=self.bundle,
            info=self.info,
            new_token_ids=self.new_token_ids,
        )
        self.optimizer = build_optimizer(self.model, cfg.optim, device=self.info.device)
        peak = (
            cfg.train.peak_tflops * 1e12
            if cfg.train.peak_tflops
            else peak_flops(detect_device_name(self.info.device))
        )
        self.peak_flops_total = peak * self.info.world_size if peak else None
        # per-rank randomness from here on (NEFTune noise); resumed runs restore it from the checkpoint
        torch.manual_seed(cfg.seed * 1000 + self.info.rank + 1)

    def _load_data(self) -> DataBundle:
        cfg = self.cfg
        # rank 0 tokenizes first and fills the cache; the other ranks then read it instead of redoing the work
        if self.info.is_main:
            bundle = build_dataset(
                cfg.data, tokenizer=self.tokenizer, max_seq_len=cfg.train.max_seq_len, expect=self.expect
            )
        barrier()
        if not self.info.is_main:
            bundle = build_dataset(
                cfg.data, tokenizer=self.tokenizer, max_seq_len=cfg.train.max_seq_len, expect=self.expect
            )
        if self.info.is_main:
            for line in bundle.summary_lines():
                logger.info("data: %s", line)
        return bundle

    # -- resume ------------------------------------------------------------------------------------------------

    def _resume(self) -> dict[str, Any] | None:
        resume = self.cfg.resume
        if resume == "none":
            return None
        if resume == "auto":
            found = ckpt.list_checkpoints(self.output_dir / "checkpoints")
            if not found:
                return None
            path = found[-1][1]
        else:
            path = Path(resume)
            if not path.is_dir():
                raise ValueError(f"resume={resume}: no such checkpoint directory")
        check_same_template(ckpt.read_trainer_state(path), self._template_state(), path=path)
        state = ckpt.load_checkpoint(path, model=self.model, optimizer=self.optimizer)
        logger.info("resumed from %s (step %d, epoch %d)", path, state["step"], state["epoch"])
        return state

    def _template_state(self) -> dict[str, Any]:
        """The chat template of the run as checkpoints record it."""
        return {
            "name": self.template.name,
            "source": self.template.source,
            "end_of_turn": self.template.end_of_turn,
            "added_tokens": dict(
                zip(self.tokenizer.convert_ids_to_tokens(self.new_token_ids), self.new_token_ids)
            ),
        }

    # -- signals -----------------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self._stop_signal = signum

        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, handler)

    # -- the loop ----------------------------------------------------------------------------------------------

    def train(self) -> Path | None:
        cfg, info, plan = self.cfg, self.info, self.plan
        state = self._resume()
        step = state["step"] if state else 0
        bad_steps = state.get("bad_steps_total", 0) if state else 0
        if info.is_main:
            truncate_metrics(self.output_dir / "metrics.jsonl", last_step=step)
        metrics = MetricsLogger(
            self.output_dir,
            enabled=info.is_main,
            tensorboard=cfg.logging.tensorboard,
            every_steps=cfg.logging.every_steps,
        )
        self._install_signal_handlers()
        profiler = StepProfiler(cfg.profile, output_dir=self.output_dir, rank=info.rank, device=info.device)
        timer = Timer()
        consecutive_bad = 0
        steps_this_run = 0
        every = cfg.checkpoint.every_steps
        try:
            while step < plan.total_steps:
                epoch, step_in_epoch = divmod(step, plan.steps_per_epoch)
                step_timer = Timer()
                record, finite, stop = self._optimizer_step(epoch, step_in_epoch, step)
                step += 1
                steps_this_run += 1
                if not finite:
                    bad_steps += 1
                    consecutive_bad += 1
                    logger.warning(
                        "step %d: non-finite loss or gradient norm; update skipped (%d in a row)",
                        step,
                        consecutive_bad,
                    )
                    if consecutive_bad >= cfg.train.max_bad_steps:
                        raise TrainingDiverged(
                            f"{consecutive_bad} consecutive steps with a non-finite loss or gradient norm "
                            f"(train.max_bad_steps={cfg.train.max_bad_steps}); stopping. The last checkpoint is intact."
                        )
                else:
                    consecutive_bad = 0
                seconds = step_timer.elapsed()
                record.update(
                    step=step,
                    epoch=epoch,
                    tokens_per_second=record["real_tokens"] / seconds,
                    **({"pairs_per_second": record["num_pairs"] / seconds} if "num_pairs" in record else {}),
                    step_seconds=seconds,
                    elapsed_seconds=timer.elapsed(),
                    peak_memory_gb=peak_memory_bytes(info.device) / 1e9,
                    rss_gb=current_rss_bytes() / 1e9,
                    bad_steps=bad_steps,
                )
                flops = record.pop("real_tokens") * record.pop("flops_per_token")
                if self.peak_flops_total:  # model FLOPs utilisation of the policy's training step (GPU)
                    record["mfu"] = flops / seconds / self.peak_flops_total
                metrics.log(
                    record,
                    total_steps=plan.total_steps,
                    elapsed=timer.elapsed(),
                    steps_done_this_run=steps_this_run,
                )
                profiler.step()
                _debug_kill(step)
                end_of_epoch = step % plan.steps_per_epoch == 0
                if stop or end_of_epoch or (every and step % every == 0) or step == plan.total_steps:
                    with named_range("checkpoint"):
                        self._save(step, bad_steps)
                if stop:
                    raise StopRequested()
        except StopRequested:
            logger.warning(
                "stopping at step %d on signal %s; checkpoint written, resume with resume=auto",
                step,
                self._stop_signal,
            )
            return None
        finally:
            profiler.stop()
            metrics.close()
        if cfg.checkpoint.save_final:
            out = ckpt.export_hf(
                self.model,
                self.output_dir / "final",
                tokenizer=self.tokenizer,
                max_shard_size=cfg.checkpoint.max_shard_size,
                dtype=export_dtype(cfg, self.info.device),
                chat_template=self.template.source,
                end_of_turn=self.template.end_of_turn,
            )
            if info.is_main:
                logger.info("exported Hugging Face model to %s", out)
            return self.output_dir / "final"
        return None

    def _optimizer_step(self, epoch: int, step_in_epoch: int, step: int) -> tuple[dict[str, Any], bool, bool]:
        """One optimizer step over this rank's micro-batches; returns the step's metrics, whether it was finite
        (and applied), and whether any rank received a stop signal.

        Collectives per step: the normaliser (before the first backward), the step statistics with the stop
        flag in one fused all-reduce after the last backward, and for packed steps the micro-batch count first.
        The statistics stay on the device until that all-reduce; the step's numbers reach the host once.
        """
        cfg = self.cfg
        micro_indices = self.sampler.step_indices(epoch, step_in_epoch)
        with named_range("data"):
            batches = self.task.micro_batches(self.bundle.examples, micro_indices)
            if self.task.packed:  # packed steps vary in micro-batches: every rank runs the largest count
                count = int(reduce_values([len(batches)], op="max")[0])
                batches += [self.task.filler_batch() for _ in range(count - len(batches))]
        # counted on the host from the CPU batches: no device round trip
        real_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        slots = sum(b["input_ids"].numel() for b in batches)  # real tokens / slots = padding efficiency
        rows = sum(b["input_ids"].shape[0] for b in batches)
        normaliser = reduce_tensor(stack_values([sum(self.task.normaliser(b) for b in batches)]))
        divisor = normaliser.clamp(min=1.0)
        lr = lr_at(step, total_steps=self.plan.total_steps, cfg=cfg.optim)
        set_lr(self.optimizer, lr)
        sums = self._forward_backward(batches, divisor=divisor, step=step)
        keys = sorted(sums)
        host = [real_tokens, slots, rows, 1 if self._stop_signal is not None else 0]
        totals = reduce_tensor(torch.cat([stack_values([sums[k] for k in keys]), stack_values(host)]))
        with named_range("optimizer"):
            if cfg.train.max_grad_norm is not None:
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.max_grad_norm)
            else:
                grad_norm = torch.nn.utils.get_total_norm(
                    [p.grad for p in self.model.parameters() if p.grad is not None]
                )
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            # the one device-to-host transfer of the step
            values = torch.cat([totals, normaliser, grad_norm.detach().reshape(1).to(totals)]).tolist()
            *stat_values, real_total, slot_total, row_total, stop_flags, normaliser_total, grad_norm_value = (
                values
            )
            totals_by_key = dict(zip(keys, stat_values))
            loss = totals_by_key["loss_sum"] / max(normaliser_total, 1.0)
            finite = math.isfinite(loss) and math.isfinite(grad_norm_value)
            if finite:  # a non-finite step is skipped: no update, gradients dropped
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        record = {
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm_value,
            self.task.count_name: int(normaliser_total),
        }
        record.update(
            self.task.step_metrics(totals_by_key, normaliser_total)
            if hasattr(self.task, "step_metrics")
            else {}
        )
        record["real_tokens"] = real_total
        record["padding_efficiency"] = real_total / max(slot_total, 1.0)
        record["flops_per_token"] = model_flops_per_token(
            self.model.config, int(slot_total / max(row_total, 1))
        )
        return record, finite, stop_flags > 0

    def _forward_backward(
        self, batches: list[dict[str, torch.Tensor]], *, divisor: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        """Forward and backward of every micro-batch; the statistics summed on the device (float64).

        Nothing here waits for the device: the loss is scaled by a device tensor and the statistics stay tensors
        (tests/trainer/test_step_syncs.py checks that no sisu code in this loop asks the device for a value).
        """
        sums: dict[str, torch.Tensor] = {}
        for batch in batches:
            batch = {k: v.to(self.info.device, non_blocking=True) for k, v in batch.items()}
            with named_range("forward"):
                loss_sum, stats = self.task.loss(self.model, batch)
            if step + 1 in _DEBUG_NAN_STEPS:  # test hook: a non-finite loss at this step
                loss_sum = loss_sum * float("nan")
                stats["loss_sum"] = loss_sum.detach()
            with named_range("backward"):
                (loss_sum / divisor.to(loss_sum.dtype)).backward()
            for key, value in stats.items():
                total = sums.get(key)
                value = value.detach().to(torch.float64)
                sums[key] = value if total is None else total + value
        return sums

    def _save(self, step: int, bad_steps: int) -> None:
        epoch = step // self.plan.steps_per_epoch
        trainer_state = {
            "step": step,
            "epoch": epoch,
            "sampler": {"epoch": epoch, "step": step % self.plan.steps_per_epoch},
            "bad_steps_total": bad_steps,
            "world_size": self.info.world_size,
            "total_steps": self.plan.total_steps,
            "chat_template": self._template_state(),
        }
        path = ckpt.save_checkpoint(
            self.output_dir / "checkpoints",
            step=step,
            model=self.model,
            optimizer=self.optimizer,
            trainer_state=trainer_state,
            keep=self.cfg.checkpoint.keep,
        )
        logger.info("checkpoint: %s", path)

    def close(self) -> None:
        teardown()


_DEBUG_NAN_STEPS = {int(s) for s in os.environ.get("SISU_DEBUG_NAN_AT_STEPS", "").split(",") if s.strip()}


def _debug_kill(step: int) -> None:
    """Test hook: SISU_DEBUG_SIGKILL_AFTER_STEP=N makes rank 0 die with SIGKILL after step N (like kill -9)."""
    target = os.environ.get("SISU_DEBUG_SIGKILL_AFTER_STEP")
    if target is not None and int(target) == step and rank() == 0:
        os.kill(os.getpid(), signal.SIGKILL)


def dry_run_plan(cfg: Any, *, expect: str, world_size: int) -> list[str]:
    """What --dry-run prints: validates, loads what is reachable (local files, cached hub data), never downloads."""
    per_step = cfg.train.micro_batch_size * world_size
    if cfg.train.global_batch_size % per_step:
        raise ValueError(
            f"train.global_batch_size ({cfg.train.global_batch_size}) must be a multiple of train.micro_batch_size "
            f"({cfg.train.micro_batch_size}) x world size ({world_size}) = {per_step}"
        )
    lines = [
        f"config valid; output_dir {cfg.output_dir}",
        f"world size {world_size}; micro batch {cfg.train.micro_batch_size}, global batch "
        f"{cfg.train.global_batch_size}, gradient accumulation {cfg.train.global_batch_size // per_step}",
    ]
    try:
        tokenizer, template, new_ids = prepare_tokenizer(cfg.model, cfg.data.template)
        bundle = build_dataset(
            cfg.data, tokenizer=tokenizer, max_seq_len=cfg.train.max_seq_len, expect=expect
        )
    except (ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        lines.append(f"not reachable from here, so no data statistics or step counts: {reason}")
        return lines
    lines.append(
        f"chat template: {template.name} (end of turn {template.end_of_turn!r})"
        + (f"; adds {len(new_ids)} marker token(s) to the tokenizer" if new_ids else "")
    )
    lines += bundle.summary_lines()
    lengths = bundle.lengths()
    plan = make_plan(
        cfg,
        kind=expect,
        num_examples=len(lengths),
        mean_length=sum(lengths) / len(lengths),
        world_size=world_size,
    )
    return lines + plan.lines()
