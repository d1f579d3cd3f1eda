"""The root configuration of each job (SFT, DPO, eval, translate) and their shared sections.

Fixed key names (users and recipes rely on them): `output_dir`, `seed`, `model.path`, `train.max_steps`,
`train.epochs`, `train.global_batch_size`, `train.micro_batch_size`, `train.max_seq_len`, `optim.lr`,
`checkpoint.every_steps`, `resume`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from data.config import DataConfig, SourceConfig
from trainer.config import option


@dataclasses.dataclass
class ModelConfig:
    """Which causal LM to load, or how to build one with random weights."""

    path: str | None = option(
        None, help="Local directory or hub id of a transformers causal LM (AutoModelForCausalLM)."
    )
    init_config: dict[str, Any] | str | None = option(
        None,
        help="Build a randomly initialised model instead of loading weights: a mapping of config fields "
        "(must include model_type, e.g. llama) or a path to a config.json. Used by tests and benchmarks.",
    )
    tokenizer: str | None = option(None, help="Tokenizer path or id; null = model.path.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", help="Storage dtype of the loaded weights; auto = float32 master weights (recommended)."
    )
    attn_implementation: str = option(
        "auto",
        help="auto: chosen per architecture (SDPA for rotary models such as Llama; for ALiBi models such as "
        "BLOOM/Poro-34B, sisu's SDPA with one additive ALiBi + mask bias, see trainer/attention.py); sdpa: the "
        "same; eager: transformers' eager attention (packed batches then get an additive mask); any other "
        "transformers implementation (flash_attention_2, flex_attention) is passed through for rotary models.",
    )
    trust_remote_code: bool = option(False, help="Allow custom modelling code from the model directory.")

    def check(self) -> None:
        if self.path is None and self.init_config is None:
            raise ValueError("model: set model.path (weights to load) or model.init_config (random init)")


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
        "device table in trainer/devices.py (no MFU on CPU).",
    )
    max_bad_steps: int = option(
        5, help="Stop after this many consecutive steps with a non-finite loss or gradient norm."
    )

    def check(self) -> None:
        for name in ("epochs", "global_batch_size", "micro_batch_size", "max_seq_len", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"train.global_batch_size ({self.global_batch_size}) is not divisible by "
                f"train.micro_batch_size ({self.micro_batch_size})"
            )
        if self.prefetch_blocks < 0:
            raise ValueError(f"train.prefetch_blocks must be >= 0, got {self.prefetch_blocks}")
        if self.loss_chunk_size is not None and self.loss_chunk_size < 1:
            raise ValueError(f"train.loss_chunk_size must be >= 1 or null, got {self.loss_chunk_size}")
        if self.neftune_alpha is not None and self.neftune_alpha < 0:
            raise ValueError(f"train.neftune_alpha must be >= 0 or null, got {self.neftune_alpha}")


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
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


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
            raise ValueError(f"checkpoint.every_steps must be >= 1 or null, got {self.every_steps}")
        if self.keep < 1:
            raise ValueError(f"checkpoint.keep must be >= 1, got {self.keep}")


@dataclasses.dataclass
class LoggingConfig:
    """Console, metrics.jsonl and TensorBoard."""

    every_steps: int = option(1, help="Print a console line every N optimizer steps.")
    tensorboard: bool = option(True, help="Write TensorBoard scalars under OUTPUT_DIR/tb/.")
    per_rank_files: bool = option(False, help="Also write OUTPUT_DIR/logs/rank_R.log for every rank.")
    level: Literal["debug", "info", "warning"] = option("info", help="Console log level on rank 0.")

    def check(self) -> None:
        if self.every_steps < 1:
            raise ValueError(f"logging.every_steps must be >= 1, got {self.every_steps}")


@dataclasses.dataclass
class DistributedConfig:
    """Process group settings."""

    backend: Literal["auto", "nccl", "gloo", "cuda:gloo"] = option(
        "auto",
        help="auto: nccl on GPU (RCCL on ROCm), gloo on CPU. cuda:gloo: gloo serving CUDA tensors only, several "
        "ranks per GPU allowed (a test backend: like NCCL it fails on any CPU tensor handed to a collective).",
    )
    timeout_minutes: float = option(30.0, help="Timeout of collective operations.")


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
        "auto", help="auto (newest complete checkpoint in OUTPUT_DIR, if any) | none | path to a checkpoint."
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
            if any(s.format in ("helpsteer2", "preference") for s in self.data.sources):
                raise ValueError(
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
            raise ValueError(f"dpo.beta must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"dpo.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")


@dataclasses.dataclass
class DPOConfig(_TrainJob):
    """Direct preference optimisation against a frozen reference (launch/dpo.py)."""

    reference: ReferenceConfig = option(help="Reference model.", factory=ReferenceConfig)
    dpo: DPOLossConfig = option(help="DPO loss.", factory=DPOLossConfig)


@dataclasses.dataclass
class BenchmarkConfig:
    """One IFEval benchmark to run."""

    name: str = option(help="ifeval_en | ifeval_fi (or another name for a custom IFEval-schema file).")
    path: str = option(help="Hub id (google/IFEval, LumiOpen/ifeval_mt) or local IFEval-schema .jsonl.")
    language: str = option("en", help="Language the responses should be in (also the language-rate target).")
    subset: str | None = option(None, help="Hub config name (e.g. fi for LumiOpen/ifeval_mt).")
    split: str = option("train", help="Hub split.")
    exclude_other_languages: bool = option(
        True, help="Drop prompts that ask for another response language (the paper's 510-prompt set)."
    )
    limit: int | None = option(None, help="Evaluate only the first N prompts (quick runs).")


@dataclasses.dataclass
class GenerationConfig:
    """Decoding settings."""

    max_new_tokens: int = option(1280, help="Maximum generated tokens per prompt (lm-eval's IFEval default).")
    batch_size: int = option(8, help="Prompts generated together on one rank.")
    do_sample: bool = option(False, help="Sample instead of greedy decoding.")
    temperature: float = option(1.0, help="Sampling temperature (do_sample only).")
    top_p: float = option(1.0, help="Nucleus sampling (do_sample only).")


@dataclasses.dataclass
class EvalConfig:
    """Generation and IFEval scoring (launch/eval.py)."""

    output_dir: str = option(help="One folder per benchmark with responses, verdicts and scores.")
    seed: int = option(42, help="Seed (sampling only).")
    model: ModelConfig = option(help="The model to evaluate.", factory=ModelConfig)
    benchmarks: list[BenchmarkConfig] = option(help="Benchmarks to run.", factory=list)
    template: str = option(
        "auto",
        help="Chat template of the prompts, as data.template: auto (the model's own, which sisu exports with every "
        "model it trains; chatml when the tokenizer has none), tokenizer, or chatml. Generation stops at the "
        "template's end of turn and at every eos id of the model's generation config.",
    )
    generation: GenerationConfig = option(help="Decoding.", factory=GenerationConfig)
    sharding: Literal["replicate", "fsdp"] = option(
        "replicate", help="replicate: a full model per rank, prompts sharded; fsdp: generate under FSDP2."
    )
    distributed: DistributedConfig = option(help="Process group.", factory=DistributedConfig)


@dataclasses.dataclass
class TranslationExample:
    """One few-shot example: a line of text and its translation."""

    source: str = option(help="Text in the source language (one line).")
    target: str = option(help="Its translation (one line).")


@dataclasses.dataclass
class TranslatePromptConfig:
    """The few-shot completion prompt: header, examples as `SOURCE_LABEL: text` / `TARGET_LABEL: text` lines
    each followed by the stop marker, then the segment to translate (see data/translate/prompt.py)."""

    header: str = option(
        "Translate the following texts from {source} to {target}. Keep code, names, numbers and markdown "
        "formatting unchanged.",
        help="First paragraph of every prompt; {source} and {target} are replaced by the language names.",
    )
    examples: list[TranslationExample] | None = option(
        None,
        help="Few-shot pairs [{source, target}, ...]; null = sisu's built-in English->Finnish examples "
        "(required for any other language pair).",
    )
    source_label: str | None = option(
        None, help="Label of the source line; null = the source language's name (English)."
    )
    target_label: str | None = option(
        None, help="Label of the translation line; null = the target language's name (Finnish)."
    )
    stop: str = option(
        "###",
        help="Marker after each example; decoding stops at it and at a line break (segments are one line).",
    )
    cache_prefix: bool = option(
        True,
        help="Encode the header and examples once and reuse their KV cache for every segment, so each prompt "
        "prefills only its segment; false = every prompt in full.",
    )

    def check(self) -> None:
        if not self.stop.strip() or "\n" in self.stop:
            raise ValueError(f"prompt.stop must be a non-empty marker without line breaks, got {self.stop!r}")
        for i, example in enumerate(self.examples or []):
            if "\n" in example.source or "\n" in example.target:
                raise ValueError(f"prompt.examples.{i}: source and target must be single lines")


@dataclasses.dataclass
class TranslateSegmentsConfig:
    """How texts are cut into segments and how long each segment's translation may be."""

    max_chars: int = option(
        600,
        help="Lines longer than this are split at sentence ends into several segments (a sentence is never cut).",
    )
    length_factor: float = option(
        2.5, help="Token budget of a segment: length_factor x its tokens + extra_new_tokens."
    )
    extra_new_tokens: int = option(16, help="Added to every segment's token budget.")

    def check(self) -> None:
        if self.max_chars < 1 or self.extra_new_tokens < 0 or self.length_factor <= 0:
            raise ValueError("segments: max_chars >= 1, length_factor > 0 and extra_new_tokens >= 0 required")


@dataclasses.dataclass
class FilterSwitch:
    """A cleaning filter without thresholds."""

    enabled: bool = option(True, help="Apply this filter.")


@dataclasses.dataclass
class LanguageFilterConfig:
    """Remove items whose translated text (outside code) is not in the target language."""

    enabled: bool = option(True, help="Apply this filter (reason `wrong_language`).")
    min_prob: float = option(0.5, help="Minimum langdetect probability of the target language.")
    min_chars: int = option(
        30, help="Texts with fewer letters outside code are not checked (langdetect is unreliable on them)."
    )

    def check(self) -> None:
        if not 0.0 <= self.min_prob <= 1.0:
            raise ValueError(f"min_prob must be in [0, 1], got {self.min_prob}")


@dataclasses.dataclass
class LengthRatioFilterConfig:
    """Remove items where a translated text is much shorter or longer than its original (outside code)."""

    enabled: bool = option(True, help="Apply this filter (reason `length_ratio`).")
    min_ratio: float = option(0.5, help="Smallest allowed translated/original character ratio.")
    max_ratio: float = option(2.0, help="Largest allowed translated/original character ratio.")
    min_chars: int = option(30, help="Originals with fewer characters outside code are not checked.")

    def check(self) -> None:
        if not 0.0 <= self.min_ratio < self.max_ratio:
            raise ValueError(f"need 0 <= min_ratio < max_ratio, got {self.min_ratio}, {self.max_ratio}")


@dataclasses.dataclass
class RepetitionFilterConfig:
    """Remove items whose translation loops (a repetition the original does not have)."""

    enabled: bool = option(True, help="Apply this filter (reason `repetition`).")
    max_repeats: int = option(
        3, help="Most consecutive copies of a word n-gram (n <= max_ngram) a translation may contain."
    )
    max_ngram: int = option(8, help="Longest n-gram (in words) checked for consecutive repeats.")
    min_gzip_ratio: float = option(
        0.25, help="Smallest allowed gzip compressed/raw size ratio (loops compress very well)."
    )
    gzip_min_chars: int = option(200, help="Texts shorter than this are not checked by the gzip ratio.")

    def check(self) -> None:
        if self.max_repeats < 1 or self.max_ngram < 1:
            raise ValueError("max_repeats and max_ngram must be >= 1")


@dataclasses.dataclass
class ScaffoldingFilterConfig:
    """Remove items whose translation echoes the prompt (not present in the original)."""

    enabled: bool = option(
        True,
        help="Apply this filter (reason `scaffolding`); the stop marker and `LABEL:` of both languages are "
        "always checked.",
    )
    markers: list[str] = option(
        help="Further strings (case-insensitive) that betray prompt scaffolding.",
        factory=lambda: ["Translate the following", "Translate into", "Translation:", "Käännös:"],
    )


@dataclasses.dataclass
class UntranslatedFilterConfig:
    """Remove items with a segment returned unchanged (outside code)."""

    enabled: bool = option(True, help="Apply this filter (reason `untranslated_segment`).")
    min_chars: int = option(
        20, help="Segments with fewer letters (outside inline code) may stay unchanged (names, short terms)."
    )


@dataclasses.dataclass
class CleaningConfig:
    """Filters applied to every translated item; each removal is counted by reason in report.json."""

    empty: FilterSwitch = option(
        help="Reason `empty_segment`: a segment with letters translated to nothing.", factory=FilterSwitch
    )
    untranslated: UntranslatedFilterConfig = option(
        help="Reason `untranslated_segment`.", factory=UntranslatedFilterConfig
    )
    scaffolding: ScaffoldingFilterConfig = option(
        help="Reason `scaffolding`.", factory=ScaffoldingFilterConfig
    )
    repetition: RepetitionFilterConfig = option(help="Reason `repetition`.", factory=RepetitionFilterConfig)
    length_ratio: LengthRatioFilterConfig = option(
        help="Reason `length_ratio`.", factory=LengthRatioFilterConfig
    )
    language: LanguageFilterConfig = option(help="Reason `wrong_language`.", factory=LanguageFilterConfig)
    identical_pair: FilterSwitch = option(
        help="Reason `identical_pair`: preference pairs whose chosen and rejected became identical.",
        factory=FilterSwitch,
    )


@dataclasses.dataclass
class TranslateConfig:
    """Translate chat or preference data with the model itself (launch/translate.py)."""

    output_dir: str = option(
        help="Translated JSONL (one file per source), rejected.jsonl, progress.jsonl and report.json."
    )
    seed: int = option(42, help="Seed (model init with model.init_config; subsets of sources[].fraction).")
    model: ModelConfig = option(help="The translating model (any causal LM).", factory=ModelConfig)
    sources: list[SourceConfig] = option(
        help="Sources to translate (same schema as data.sources; chat and preference formats may be mixed).",
        factory=list,
    )
    on_invalid: Literal["error", "skip"] = option(
        "error", help="Invalid source rows: error (stop) or skip (counted in report.json)."
    )
    source_lang: str = option("en", help="Language code of the sources.")
    target_lang: str = option("fi", help="Target language code (the `lang` of the output records).")
    roles: list[str] = option(
        help="Message roles to translate (chat messages and preference prompt turns); others are copied. "
        "Chosen and rejected are always translated.",
        factory=lambda: ["system", "user", "assistant"],
    )
    items_per_chunk: int = option(
        16,
        help="Records per unit of work: a rank translates one chunk per round (segments length-sorted and "
        "batched within it) and its finished records are appended to progress.jsonl.",
    )
    prompt: TranslatePromptConfig = option(help="Few-shot prompt.", factory=TranslatePromptConfig)
    segments: TranslateSegmentsConfig = option(help="Segmentation.", factory=TranslateSegmentsConfig)
    generation: GenerationConfig = option(
        help="Decoding (greedy; max_new_tokens caps every segment's budget).", factory=GenerationConfig
    )
    cleaning: CleaningConfig = option(help="Cleaning filters.", factory=CleaningConfig)
    sharding: Literal["replicate", "fsdp"] = option(
        "replicate",
        help="replicate: a full model per rank, chunks dealt to ranks; fsdp: the model sharded with FSDP2 over all "
        "ranks, which translate their chunks in lockstep (Poro-34B in bf16, 68 GB, on 64 GB MI250X GCDs).",
    )
    distributed: DistributedConfig = option(help="Process group.", factory=DistributedConfig)

    def check(self) -> None:
        if self.source_lang == self.target_lang:
            raise ValueError(f"source_lang and target_lang are both {self.target_lang!r}")
        if self.items_per_chunk < 1:
            raise ValueError(f"items_per_chunk must be >= 1, got {self.items_per_chunk}")
        unknown = sorted(set(self.roles) - {"system", "user", "assistant"})
        if unknown:
            raise ValueError(f"roles: unknown role(s) {unknown} (expected system, user, assistant)")
        if self.generation.do_sample:
            raise ValueError("generation.do_sample must be false: translation decodes greedily")
        if self.generation.batch_size < 1 or self.generation.max_new_tokens < 1:
            raise ValueError("generation.batch_size and generation.max_new_tokens must be >= 1")


JOBS: dict[str, type] = {
    "sft": SFTConfig,
    "dpo": DPOConfig,
    "eval": EvalConfig,
    "translate": TranslateConfig,
}
