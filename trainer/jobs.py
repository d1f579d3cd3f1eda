"""The configuration of the training jobs (SFT and DPO): the root of each and their sections.

Fixed key names (users and recipes rely on them): `output_dir`, `seed`, `model.path`, `train.max_steps`,
`train.epochs`, `train.global_batch_size`, `train.micro_batch_size`, `train.max_seq_len`, `optim.lr`,
`checkpoint.every_steps`, `resume`. Model and process-group settings are shared with the other jobs
(runtime/settings.py); eval's and translation's configs live beside those jobs (eval/config.py,
eval/translation/config.py).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from data.config import DataConfig, option
from data.errors import ConfigError
from data.sampler import check_batch_sizes
from data.sources import PREFERENCE_FORMATS
from runtime.builder import ShardingSettings
from runtime.settings import DistributedConfig, ModelConfig


@dataclasses.dataclass
class TrainConfig:
    """Batching, length limits and the training-loop switches."""

    epochs: int = option(1, help="Number of passes over the training data.")
    max_steps: int | None = option(
        None, help="Stop after this many optimizer steps (overrides epochs for the schedule); null = epochs."
    )
    global_batch_size: int = option(
        8,
        help="Samples per optimizer step over all ranks; must be a multiple of micro_batch_size x world size.",
    )
    micro_batch_size: int = option(1, help="Samples per forward/backward on one rank.")
    max_seq_len: int = option(2048, help="Maximum tokens per sample (or per packed row).")
    max_grad_norm: float | None = option(1.0, help="Clip the global gradient norm to this value; null = off.")
    mixed_precision: Literal["auto", "bf16", "fp32"] = option(
        "auto", help="auto: bf16 compute with fp32 master weights and reductions on GPU, fp32 on CPU."
    )
    activation_checkpointing: bool = option(False, help="Recompute each decoder block in the backward pass.")
    reshard_after_forward: bool = option(
        True, help="FSDP2: free gathered parameters after forward (saves memory, costs an all-gather)."
    )
    cpu_offload: bool = option(
        False, help="FSDP2: keep parameters, gradients and optimizer state on the CPU."
    )
    prefetch_blocks: int = option(
        0,
        help="FSDP2: explicitly prefetch the all-gathers of the next N decoder blocks in forward and backward "
        "(more overlap of communication and compute, N blocks more of gathered parameters); 0 = FSDP2's own "
        "implicit prefetching.",
    )
    compile: bool = option(False, help="torch.compile each decoder block (GPU).")
    neftune_alpha: float | None = option(
        None, help="NEFTune noise scale alpha (paper used 5); null = off. Training mode only."
    )
    loss_chunk_size: int | None = option(
        1024,
        help="Compute the LM head and the log-probs in chunks of this many tokens (never the full tokens x vocab "
        "logits), only where there is a target; null = the model's own full-logits forward.",
    )
    peak_tflops: float | None = option(
        None,
        help="Peak dense bf16 TFLOP/s of one device (one GCD on MI250X) for the MFU metric; null = from the "
        "device table in runtime/devices.py (no MFU on CPU).",
    )
    max_bad_steps: int = option(
        5, help="Stop after this many consecutive steps with a non-finite loss or gradient norm."
    )

    def sharding(self) -> ShardingSettings:
        """The model's FSDP2 and precision settings of this section."""
        return ShardingSettings(
            mixed_precision=self.mixed_precision,
            activation_checkpointing=self.activation_checkpointing,
            reshard_after_forward=self.reshard_after_forward,
            cpu_offload=self.cpu_offload,
            compile=self.compile,
            prefetch_blocks=self.prefetch_blocks,
        )

    def check(self) -> None:
        for name in ("epochs", "global_batch_size", "micro_batch_size", "max_seq_len", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")
        check_batch_sizes(global_batch_size=self.global_batch_size, micro_batch_size=self.micro_batch_size)
        if self.prefetch_blocks < 0:
            raise ConfigError(f"train.prefetch_blocks must be >= 0, got {self.prefetch_blocks}")
        if self.loss_chunk_size is not None and self.loss_chunk_size < 1:
            raise ConfigError(f"train.loss_chunk_size must be >= 1 or null, got {self.loss_chunk_size}")
        if self.neftune_alpha is not None and self.neftune_alpha < 0:
            raise ConfigError(f"train.neftune_alpha must be >= 0 or null, got {self.neftune_alpha}")


@dataclasses.dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule."""

    lr: float = option(2e-5, help="Peak learning rate.")
    weight_decay: float = option(0.0, help="AdamW weight decay (never applied to norms and biases).")
    betas: list[float] = option(help="AdamW betas.", factory=lambda: [0.9, 0.999])
    eps: float = option(1e-8, help="AdamW epsilon.")
    warmup_ratio: float = option(0.1, help="Share of all optimizer steps spent in linear warmup.")
    scheduler: Literal["cosine", "linear", "constant"] = option(
        "cosine", help="Decay after warmup: cosine | linear | constant."
    )
    min_lr_ratio: float = option(0.0, help="Final learning rate as a fraction of lr.")
    fused: bool | None = option(None, help="Fused AdamW kernel; null = on where the device supports it.")

    def check(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclasses.dataclass
class CheckpointConfig:
    """Sharded checkpoints for exact resume, and the Hugging Face export."""

    every_steps: int | None = option(
        None,
        help="Save a sharded checkpoint every N optimizer steps (and at each epoch end); null = epoch ends.",
    )
    keep: int = option(2, help="Keep the newest N checkpoints.")
    save_final: bool = option(True, help="Export OUTPUT_DIR/final/ in Hugging Face format at the end.")
    max_shard_size: str = option("5GB", help="Largest safetensors shard of the export.")
    export_dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto",
        help="Dtype of the exported weights (and of `dtype` in its config.json); auto = the compute dtype: "
        "bfloat16 under bf16 mixed precision (GPU), else the stored dtype (float32 on CPU).",
    )

    def check(self) -> None:
        if self.every_steps is not None and self.every_steps < 1:
            raise ConfigError(f"checkpoint.every_steps must be >= 1 or null, got {self.every_steps}")
        if self.keep < 1:
            raise ConfigError(f"checkpoint.keep must be >= 1, got {self.keep}")


@dataclasses.dataclass
class LoggingConfig:
    """Console, metrics.jsonl and TensorBoard."""

    every_steps: int = option(1, help="Print a console line every N optimizer steps.")
    tensorboard: bool = option(True, help="Write TensorBoard scalars under OUTPUT_DIR/tb/.")
    per_rank_files: bool = option(False, help="Also write OUTPUT_DIR/logs/rank_R.log for every rank.")
    level: Literal["debug", "info", "warning"] = option("info", help="Console log level on rank 0.")

    def check(self) -> None:
        if self.every_steps < 1:
            raise ConfigError(f"logging.every_steps must be >= 1, got {self.every_steps}")


@dataclasses.dataclass
class ProfileConfig:
    """torch.profiler with a schedule, plus NVTX/roctx ranges."""

    enabled: bool = option(False, help="Record a profile (traces under OUTPUT_DIR/profile/).")
    wait: int = option(1, help="Steps to skip before warming up.")
    warmup: int = option(1, help="Warmup steps (recorded, then discarded).")
    active: int = option(3, help="Steps to record.")
    ranks: list[int] = option(help="Ranks that record.", factory=lambda: [0])
    memory: bool = option(False, help="Also record memory (and a CUDA memory snapshot on GPU).")


@dataclasses.dataclass
class _TrainJob:
    output_dir: str = option(help="Directory for config.yaml, metrics.jsonl, tb/, checkpoints/ and final/.")
    seed: int = option(42, help="Seed of model init, NEFTune noise and data order.")
    resume: str = option(
        "auto",
        help="auto (newest checkpoint in OUTPUT_DIR whose checksums verify, if any; damaged ones are passed over with a warning) | none | path to a checkpoint (refused if damaged).",
    )
    model: ModelConfig = option(help="The model to train.", factory=ModelConfig)
    data: DataConfig = option(help="Training data.", factory=DataConfig)
    train: TrainConfig = option(help="Batching and loop settings.", factory=TrainConfig)
    optim: OptimConfig = option(help="Optimizer and schedule.", factory=OptimConfig)
    checkpoint: CheckpointConfig = option(help="Checkpoints and export.", factory=CheckpointConfig)
    logging: LoggingConfig = option(help="Logging.", factory=LoggingConfig)
    distributed: DistributedConfig = option(help="Process group.", factory=DistributedConfig)
    profile: ProfileConfig = option(help="Profiling.", factory=ProfileConfig)

    def check(self) -> None:
        if self.train.max_seq_len <= self.data.max_prompt_length and self.data.sources:
            if any(s.format in PREFERENCE_FORMATS for s in self.data.sources):
                raise ConfigError(
                    f"data.max_prompt_length ({self.data.max_prompt_length}) must be smaller than "
                    f"train.max_seq_len ({self.train.max_seq_len}) to leave room for the completion"
                )


@dataclasses.dataclass
class SFTConfig(_TrainJob):
    """Supervised fine-tuning (launch/sft.py)."""


@dataclasses.dataclass
class ReferenceConfig:
    """The frozen reference model of DPO."""

    path: str | None = option(None, help="Reference weights; null = the same weights as model.path.")
    mode: Literal["auto", "live", "precompute"] = option(
        "auto",
        help="live: run the reference every step; precompute: once before training, then reuse its log-probs; "
        "auto: precompute when train.epochs > 1.",
    )


@dataclasses.dataclass
class DPOLossConfig:
    """DPO objective."""

    beta: float = option(0.1, help="Inverse temperature beta (paper: 0.05 best of 0.01, 0.05, 0.1).")
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust"] = option("sigmoid", help="DPO loss variant.")
    label_smoothing: float = option(0.0, help="Label smoothing epsilon (sigmoid and robust).")

    def check(self) -> None:
        if self.beta <= 0:
            raise ConfigError(f"dpo.beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"dpo.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")


@dataclasses.dataclass
class DPOConfig(_TrainJob):
    """Direct preference optimisation against a frozen reference (launch/dpo.py)."""

    reference: ReferenceConfig = option(help="Reference model.", factory=ReferenceConfig)
    dpo: DPOLossConfig = option(help="DPO loss.", factory=DPOLossConfig)
