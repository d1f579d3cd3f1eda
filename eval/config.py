"""The configuration of launch/eval.py (benchmarks, decoding, the judge model of open-ended benchmarks) and the
decoding settings every generation job shares (`GenerationConfig`, also used by translation)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from data.config import option
from data.errors import ConfigError
from eval.judge.prompts import DEFAULT_PAIRWISE, DEFAULT_SINGLE, check_templates
from runtime.settings import DistributedConfig, ModelConfig


@dataclasses.dataclass
class BenchmarkConfig:
    """One benchmark to run: IFEval (verifiable instructions) or an open-ended judge benchmark (MT-Bench style)."""

    name: str = option(help="ifeval_en | ifeval_fi | mtbench_fi ... (the folder of its outputs).")
    path: str = option(
        help="ifeval: hub id (google/IFEval, LumiOpen/ifeval_mt) or local IFEval-schema .jsonl; judge: hub id or "
        "local .jsonl of MT-Bench-schema questions (question_id, category, turns, optional reference)."
    )
    kind: Literal["ifeval", "judge"] = option(
        "ifeval",
        help="ifeval: IFEval verdicts; judge: the model answers every turn (seeing its own earlier answers) and "
        "the `judge` model grades each answer 1-10 (and compares it with `baseline` when set); an answer not in "
        "`language` gets grade 1 (a loss) without asking the judge.",
    )
    baseline: str | None = option(
        None,
        help="judge only: answers.jsonl of another run's judge benchmark with the same questions (e.g. the SFT "
        "model's); each answer is then also compared with the baseline's, in both orders (win, tie or loss).",
    )
    language: str = option("en", help="Language the responses should be in (also the language-rate target).")
    subset: str | None = option(None, help="Hub config name (e.g. fi for LumiOpen/ifeval_mt).")
    split: str = option("train", help="Hub split.")
    exclude_other_languages: bool = option(
        True, help="Drop prompts that ask for another response language (the paper's 510-prompt set)."
    )
    limit: int | None = option(None, help="Evaluate only the first N prompts (questions) (quick runs).")

    def check(self) -> None:
        if self.baseline is not None and self.kind != "judge":
            raise ConfigError(f"benchmark {self.name}: baseline is for kind: judge only")


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
class JudgeModelConfig(ModelConfig):
    """The judge model (as `model`); may stay empty when no benchmark is judged."""

    def check(self) -> None:
        if self.path is not None or self.init_config is not None:
            super().check()


@dataclasses.dataclass
class JudgeGenerationConfig(GenerationConfig):
    """The judge's decoding: as `generation`, with room for a short explanation and the verdict."""

    max_new_tokens: int = option(512, help="Maximum tokens of one judgement (its reasoning and the verdict).")


@dataclasses.dataclass
class JudgeConfig:
    """The judge model of `kind: judge` benchmarks: loaded after the evaluated model has answered (and freed)."""

    model: JudgeModelConfig = option(
        help="The judge: any causal LM with a chat template (path, tokenizer, dtype, ... as `model`).",
        factory=JudgeModelConfig,
    )
    template: str = option(
        "auto", help="Chat template of the judge's prompts, as the evaluated model's `template`."
    )
    generation: JudgeGenerationConfig = option(
        help="The judge's decoding (greedy by default).", factory=JudgeGenerationConfig
    )
    sharding: Literal["replicate", "fsdp"] = option(
        "replicate", help="replicate: a full judge per rank; fsdp: the judge sharded over the ranks (70B)."
    )
    prompt_single: str = option(
        DEFAULT_SINGLE,
        help="Grading prompt; placeholders {conversation} (the dialogue up to the answer to grade), {reference} "
        "(the reference answer's block, or nothing) and {language}; the grade is read from [[N]], 1-10.",
    )
    prompt_pairwise: str = option(
        DEFAULT_PAIRWISE,
        help="Comparison prompt; placeholders {conversation_a}, {conversation_b}, {reference}, {language}; the "
        "verdict is read from [[A]], [[B]] or [[C]] (tie).",
    )
    bootstrap_samples: int = option(1000, help="Resamples of the questions for the 95% intervals.")

    def check(self) -> None:
        problems = check_templates(self.prompt_single, self.prompt_pairwise)
        if problems:
            raise ConfigError("; ".join(problems))
        if self.bootstrap_samples < 1:
            raise ConfigError(f"judge.bootstrap_samples must be >= 1, got {self.bootstrap_samples}")


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
    judge: JudgeConfig = option(help="The judge model of `kind: judge` benchmarks.", factory=JudgeConfig)

    def check(self) -> None:
        judged = [b.name for b in self.benchmarks if b.kind == "judge"]
        if judged and self.judge.model.path is None and self.judge.model.init_config is None:
            raise ConfigError(
                f"benchmarks {', '.join(judged)} are judged: set judge.model.path (the judge model)"
            )

    distributed: DistributedConfig = option(help="Process group.", factory=DistributedConfig)
