"""The configuration of launch/eval.py (benchmarks, decoding) and the decoding settings every generation job
shares (`GenerationConfig`, also used by translation)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from data.config import option
from data.errors import ConfigError
from runtime.settings import DistributedConfig, ModelConfig


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

    def check(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("generation.batch_size and generation.max_new_tokens must be >= 1")


@dataclasses.dataclass
class EvalConfig:
    """Generation and IFEval scoring (launch/eval.py)."""

    output_dir: str = option(help="One folder per benchmark with responses, verdicts and scores.")
    seed: int = option(
        42,
        help="Seed of sampling (each batch of prompts samples from a seed derived from it: rank-invariant).",
    )
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
