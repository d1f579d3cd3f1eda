"""The configuration of launch/make_pairs.py: prompts, the benchmarks they must not come from, sampling."""

from __future__ import annotations

import dataclasses
from typing import Literal

from data.config import SourceConfig, option
from data.errors import ConfigError
from eval.config import GenerationConfig
from runtime.settings import DistributedConfig, ModelConfig

# IFEval in English and the Finnish translation the paper evaluates on: no pair may be built on their prompts.
DEFAULT_BENCHMARKS = (("google/IFEval", None), ("LumiOpen/ifeval_mt", "fi"))


@dataclasses.dataclass
class BenchmarkPromptsConfig:
    """A benchmark whose prompts are refused as pair prompts."""

    path: str = option(help="Hub id (google/IFEval, LumiOpen/ifeval_mt) or local IFEval-schema .jsonl.")
    subset: str | None = option(None, help="Hub config name (fi for LumiOpen/ifeval_mt).")
    split: str = option("train", help="Hub split.")


@dataclasses.dataclass
class PairSamplingConfig(GenerationConfig):
    """Sampling of the answers (every prompt is answered samples_per_prompt times)."""

    max_new_tokens: int = option(512, help="Maximum tokens per answer; a cut answer is never chosen.")
    batch_size: int = option(
        16,
        help="Sequences generated together on one rank (prompts per batch: batch_size // samples_per_prompt).",
    )
    do_sample: bool = option(True, help="Must be true: pairs need different answers to one prompt.")
    temperature: float = option(0.8, help="Sampling temperature.")
    top_p: float = option(0.95, help="Nucleus sampling.")
    samples_per_prompt: int = option(4, help="Answers sampled per prompt (at least 2).")


@dataclasses.dataclass
class PairsConfig:
    """On-policy preference pairs from the model's own samples (launch/make_pairs.py)."""

    output_dir: str = option(
        help="pairs.jsonl (a `preference` source), samples.jsonl, report.json, and generations.jsonl (the "
        "progress a re-run continues)."
    )
    seed: int = option(
        42,
        help="Seed of sampling: each batch samples from a seed derived from it and the batch's prompts, so 1 and N "
        "ranks and a restarted run write the same samples (also the random init with model.init_config).",
    )
    model: ModelConfig = option(
        help="The model whose answers are paired (the policy DPO will train).", factory=ModelConfig
    )
    template: str = option(
        "auto",
        help="Chat template of the prompts, as eval's: auto (the model's own, else chatml), tokenizer or chatml. "
        "A prompt is rendered exactly as DPO renders it before an answer.",
    )
    target_lang: str = option(
        "fi", help="Language the chosen answers must be in (ISO 639-1, as langdetect names it)."
    )
    sources: list[SourceConfig] = option(
        help="Chat or preference sources (data.sources schema, any format): the prompt is the conversation up to "
        "its last user turn. Keep to prompts in target_lang with `lang`.",
        factory=list,
    )
    instruction_sources: list[str] = option(
        help="IFEval-schema .jsonl files (key, prompt, instruction_id_list, kwargs): prompts with verifiable "
        "instructions, checked with sisu's IFEval checkers in target_lang (Finnish-aware case checks).",
        factory=list,
    )
    benchmarks: list[BenchmarkPromptsConfig] = option(
        help="Benchmarks whose prompts are refused (counted as benchmark_prompt): a prompt whose user turn equals a "
        "benchmark prompt (case and whitespace ignored) is never paired. Default: google/IFEval and "
        "LumiOpen/ifeval_mt (fi); offline, point them to local copies. An empty list turns the check off.",
        factory=lambda: [BenchmarkPromptsConfig(path, subset) for path, subset in DEFAULT_BENCHMARKS],
    )
    allow_truncated_chosen: bool = option(
        False,
        help="Let an answer cut at generation.max_new_tokens be chosen (default: never; DPO would teach the model to "
        "stop mid-sentence). Only for models that never stop, such as the random test model.",
    )
    max_prompt_tokens: int = option(
        1024,
        help="Prompts longer than this many tokens (as rendered) are left out, counted as prompt_too_long.",
    )
    on_invalid: Literal["error", "skip"] = option(
        "error", help="Invalid source rows: error (stop with file and line) or skip (counted in report.json)."
    )
    generation: PairSamplingConfig = option(help="Sampling.", factory=PairSamplingConfig)
    sharding: Literal["replicate", "fsdp"] = option(
        "replicate",
        help="replicate: a full model per rank, prompts dealt to ranks; fsdp: the model sharded with FSDP2 over all "
        "ranks, which generate in lockstep (Poro-34B on 64 GB GCDs).",
    )
    distributed: DistributedConfig = option(help="Process group.", factory=DistributedConfig)

    def check(self) -> None:
        if not self.generation.do_sample:
            raise ConfigError("generation.do_sample must be true: pairs need different answers to one prompt")
        if self.generation.samples_per_prompt < 2:
            raise ConfigError(
                f"generation.samples_per_prompt must be >= 2, got {self.generation.samples_per_prompt}"
            )
        if not (self.generation.temperature > 0 and 0 < self.generation.top_p <= 1):
            raise ConfigError("generation: temperature > 0 and 0 < top_p <= 1 required")
        if self.max_prompt_tokens < 1:
            raise ConfigError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if not self.target_lang.strip() or self.target_lang != self.target_lang.strip().lower():
            raise ConfigError(
                f"target_lang must be a lower-case language code such as fi, got {self.target_lang!r}"
            )

    @property
    def prompts_per_batch(self) -> int:
        return max(1, self.generation.batch_size // self.generation.samples_per_prompt)
