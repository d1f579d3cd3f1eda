"""The FSDP2 training loop shared by SFT and DPO, readable top to bottom:

runtime -> config on disk -> tokenizer and data -> plan -> model (sharded) -> optimizer -> resume
-> for each optimizer step: micro-batches, global normaliser, forward/backward, clip, step, log, checkpoint
-> Hugging Face export
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from data.batching import Batching
from data.errors import ConfigError, SisuError
from data.pipeline import DataBundle, build_dataset
from data.sampler import StepSampler
from runtime import faults
from runtime.attention import attention_name
from runtime.builder import build_sharded_model
from runtime.config import write_config
from runtime.devices import detect_device_name, peak_flops
from runtime.distributed import (
    DistInfo,
    data_group,
    init_distributed,
    reduce_tensor,
    reduce_values,
    seed_everything,
    setup_logging,
    stack_values,
    teardown,
)
from runtime.flops import model_flops_per_token
from runtime.lock import hold
from runtime.metrics import MetricsLogger, Timer, current_rss_bytes, peak_memory_bytes, truncate_metrics
from runtime.model import prepare_tokenizer
from runtime.profiling import StepProfiler, named_range
from trainer import checkpoint as ckpt
from trainer.objectives import Objective
from trainer.optim import build_optimizer, lr_at, set_lr
from trainer.step_stats import HostCounts, StepStats, gather_step_stats
from trainer.steps import plan_steps

logger = logging.getLogger("sisu")


class TrainingDiverged(SisuError):
    """Too many consecutive non-finite steps; the message is one line for the user (exit status 3)."""

    exit_code = 3


class StopRequested(Exception):
    """SIGTERM/SIGUSR1 arrived: the current step finished and a checkpoint was written."""


class Trainer:
    """Runs one training job. `make_task(tokenizer, model, bundle, info, new_token_ids)` supplies the SFT or DPO
    specifics: the batching (data/batching.py: this rank's examples of a step -> micro-batches, fillers, each one's
    share of the normaliser) and the objective (trainer/objectives.py: a micro-batch's loss and statistics, the
    step's metrics)."""

    def __init__(
        self, cfg: Any, *, make_task: Callable[..., tuple[Batching, Objective]], expect: str
    ) -> None:
        self.cfg = cfg
        self.make_task = make_task
        self.expect = expect
        self.output_dir = Path(cfg.output_dir)
        self._stop_signal: int | None = None
        self._lock = contextlib.ExitStack()

    # -- setup -------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        self.info: DistInfo = init_distributed(
            backend=cfg.distributed.backend, timeout_minutes=cfg.distributed.timeout_minutes
        )
        log_dir = self.output_dir / "logs" if cfg.logging.per_rank_files else None
        setup_logging(rank=self.info.rank, level=cfg.logging.level, log_dir=log_dir)
        seed_everything(cfg.seed)
        self._lock.enter_context(hold(self.output_dir, is_main=self.info.is_main))  # one job per output_dir
        if self.info.is_main:
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
        self.plan = plan_steps(
            cfg,
            kind=self.expect,
            num_examples=len(lengths),
            mean_length=float(lengths.mean()),
            world_size=self.info.world_size,
            num_nodes=self.info.num_nodes,
        )
        for line in self.plan.lines():
            logger.info("plan: %s", line)
        self.model = build_sharded_model(
            cfg.model,
            cfg.train.sharding(),
            info=self.info,
            vocab_size=len(self.tokenizer),
            seed=cfg.seed,
            new_token_ids=self.new_token_ids,
        )
        faults.plant_forward_bug(self.model)  # test hook
        if self.info.is_main:
            logger.info("attention: %s", attention_name(self.model))
        self.batching, self.objective = self.make_task(
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
        # all ranks hash, read and tokenize together on a cold cache, then map the same files (data/build.py)
        bundle = build_dataset(
            cfg.data,
            tokenizer=self.tokenizer,
            max_seq_len=cfg.train.max_seq_len,
            expect=self.expect,
            group=data_group(timeout_minutes=cfg.distributed.timeout_minutes),
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
        path, verified = self._verified_checkpoint(resume)
        if path is None:
            return None
        saved = verified.trainer_state
        ckpt.check_same_template(saved, self._template_state(), path=path)
        ckpt.check_same_run(saved, data=self._data_state(), world_size=self.info.world_size, path=path)
        state = ckpt.load_checkpoint(path, model=self.model, optimizer=self.optimizer, verified=verified)
        logger.info("resumed from %s (step %d, epoch %d)", path, state["step"], state["epoch"])
        return state

    def _verified_checkpoint(self, resume: str) -> tuple[Path | None, Any]:
        """The checkpoint to resume and its checked contents: resume=auto takes the newest that verifies (and says
        which it passed over); a checkpoint named by path must verify."""
        if resume != "auto":
            path = Path(resume)
            if not path.is_dir():
                raise ConfigError(f"resume={resume}: no such checkpoint directory")
            match = ckpt.STEP_DIR.match(path.name)
            problem, verified = ckpt.verify_checkpoint(path, step=int(match.group(1)) if match else None)
            if problem:
                raise SisuError(
                    f"resume={resume}: the checkpoint is damaged ({problem}); resume=auto takes the newest one "
                    "that verifies, resume=none starts over"
                )
            return path, verified
        root = self.output_dir / "checkpoints"
        passed_over = []
        candidates = list(reversed(ckpt.list_checkpoints(root)))
        for index, (step, path) in enumerate(candidates):
            problem, verified = ckpt.verify_checkpoint(path, step=step)
            if problem is None:
                if passed_over:
                    logger.warning("resuming from %s, the newest checkpoint that verifies", path)
                return path, verified
            then = "trying the one before it" if index + 1 < len(candidates) else "it is the oldest"
            logger.warning("checkpoint %s is damaged (%s); %s", path, problem, then)
            passed_over.append(f"{path.name}: {problem}")
        if passed_over:
            raise SisuError(
                f"no checkpoint in {root} verifies ({'; '.join(passed_over)}); restore them, or resume=none to "
                "start over (which overwrites them)"
            )
        return None, None

    def _data_state(self) -> dict[str, Any]:
        """What the step sequence depends on, as checkpoints record it: the sources, their record counts, the
        tokenized examples (a hash of the sources' bytes, tokenizer, template and settings) and the sampler's settings."""
        cfg = self.cfg
        return {
            "sources": [dataclasses.asdict(source) for source in cfg.data.sources],
            "record_counts": [report.num_selected or report.num_records for report in self.bundle.reports],
            "examples": len(self.bundle.dataset),
            "tokenized": self.bundle.key,
            "sampler": {
                "seed": cfg.seed,
                "shuffle": cfg.data.shuffle,
                "group_by_length": cfg.data.group_by_length,
                "global_batch_size": cfg.train.global_batch_size,
            },
        }

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
                stats, lr = self._optimizer_step(epoch, step_in_epoch, step)
                step += 1
                steps_this_run += 1
                if not stats.finite:
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
                record = self._record(
                    stats,
                    lr=lr,
                    step=step,
                    epoch=epoch,
                    seconds=seconds,
                    elapsed=timer.elapsed(),
                    bad_steps=bad_steps,
                )
                metrics.log(
                    record,
                    total_steps=plan.total_steps,
                    elapsed=timer.elapsed(),
                    steps_done_this_run=steps_this_run,
                )
                profiler.step()
                faults.kill_after_step(step)  # test hook
                end_of_epoch = step % plan.steps_per_epoch == 0
                if stats.stop or end_of_epoch or (every and step % every == 0) or step == plan.total_steps:
                    with named_range("checkpoint"):
                        self._save(step, bad_steps)
                if stats.stop:
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
                dtype=ckpt.export_dtype(cfg, self.info.device),
                chat_template=self.template.source,
                end_of_turn=self.template.end_of_turn,
            )
            if info.is_main:
                logger.info("exported Hugging Face model to %s", out)
            return self.output_dir / "final"
        return None

    def _optimizer_step(self, epoch: int, step_in_epoch: int, step: int) -> tuple[StepStats, float]:
        """One optimizer step: batching, the objective's forward and backward per micro-batch, the update.
        Returns the step's statistics (trainer/step_stats.py) and its learning rate."""
        batching = self.batching
        with named_range("data"):
            batches = batching.micro_batches(
                self.bundle.dataset, self.sampler.step_indices(epoch, step_in_epoch)
            )
            if batching.packed:  # packed steps vary in micro-batches: every rank runs the largest count
                count = int(reduce_values([len(batches)], op="max")[0])
                batches += [batching.filler_batch() for _ in range(count - len(batches))]
        counts = HostCounts.of(batches, batching.normaliser)
        normaliser = reduce_tensor(
            stack_values([counts.normaliser])
        )  # every micro-batch's loss is divided by it
        lr = lr_at(step, total_steps=self.plan.total_steps, cfg=self.cfg.optim)
        set_lr(self.optimizer, lr)
        sums = self._forward_backward(batches, divisor=normaliser.clamp(min=1.0), step=step)
        with named_range("optimizer"):
            stats = gather_step_stats(
                sums,
                counts,
                normaliser=normaliser,
                grad_norm=self._clip_gradients(),
                stop=self._stop_signal is not None,
            )
            if stats.finite:  # a non-finite step is skipped: no update, gradients dropped
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return stats, lr

    def _forward_backward(
        self, batches: list[dict[str, torch.Tensor]], *, divisor: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        """Forward and backward of every micro-batch; the objective's statistics summed on the device (float64).

        Nothing here waits for the device: the loss is scaled by a device tensor and the statistics stay tensors
        (tests/trainer/test_step_syncs.py checks that no sisu code in this loop asks the device for a value).
        """
        sums: dict[str, torch.Tensor] = {}
        make_nan = faults.nan_loss_at(step + 1)  # test hook
        for batch in batches:
            batch = {k: v.to(self.info.device, non_blocking=True) for k, v in batch.items()}
            with named_range("forward"):
                loss_sum, stats = self.objective.loss(self.model, batch)
            if make_nan:
                loss_sum = loss_sum * float("nan")
                stats["loss_sum"] = loss_sum.detach()
            with named_range("backward"):
                (loss_sum / divisor.to(loss_sum.dtype)).backward()
            for key, value in stats.items():
                total = sums.get(key)
                value = value.detach().to(torch.float64)
                sums[key] = value if total is None else total + value
        return sums

    def _clip_gradients(self) -> torch.Tensor:
        """The global gradient norm (a device tensor), after clipping to `train.max_grad_norm` when it is set."""
        max_norm = self.cfg.train.max_grad_norm
        if max_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        else:
            norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.model.parameters() if p.grad is not None]
            )
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def _record(self, stats: StepStats, *, lr: float, step: int, epoch: int, seconds: float, elapsed: float,
                bad_steps: int) -> dict[str, Any]:  # fmt: skip
        """The step's line of metrics.jsonl."""
        count_name = self.batching.count_name
        record = {
            "loss": stats.loss,
            "lr": lr,
            "grad_norm": stats.grad_norm,
            count_name: int(stats.normaliser),
        }
        record.update(self.objective.step_metrics(stats.sums, stats.normaliser))
        record["padding_efficiency"] = stats.real_tokens / max(stats.slots, 1.0)
        record.update(
            step=step,
            epoch=epoch,
            tokens_per_second=stats.real_tokens / seconds,
            **({"pairs_per_second": record["num_pairs"] / seconds} if count_name == "num_pairs" else {}),
            step_seconds=seconds,
            elapsed_seconds=elapsed,
            peak_memory_gb=peak_memory_bytes(self.info.device) / 1e9,
            rss_gb=current_rss_bytes() / 1e9,
            bad_steps=bad_steps,
        )
        if self.peak_flops_total:  # model FLOPs utilisation of the policy's training step (GPU)
            row_length = int(stats.slots / max(stats.rows, 1))
            flops = stats.real_tokens * model_flops_per_token(self.model, row_length)
            record["mfu"] = flops / seconds / self.peak_flops_total
        return record

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
            "data": self._data_state(),
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
        try:
            self._lock.close()
        finally:
            teardown()
