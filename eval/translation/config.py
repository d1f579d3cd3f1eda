"""The configuration of launch/translate.py: sources, languages, segmentation, sharding; the prompt and cleaning
sections belong to the pure parts that read them (data/translate/config.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Literal

from data.config import SourceConfig, option
from data.errors import ConfigError
from data.translate.config import CleaningConfig, TranslatePromptConfig
from eval.config import GenerationConfig
from runtime.config import config_to_dict
from runtime.settings import DistributedConfig, ModelConfig


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
            raise ConfigError("segments: max_chars >= 1, length_factor > 0 and extra_new_tokens >= 0 required")


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
            raise ConfigError(f"source_lang and target_lang are both {self.target_lang!r}")
        if self.items_per_chunk < 1:
            raise ConfigError(f"items_per_chunk must be >= 1, got {self.items_per_chunk}")
        unknown = sorted(set(self.roles) - {"system", "user", "assistant"})
        if unknown:
            raise ConfigError(f"roles: unknown role(s) {unknown} (expected system, user, assistant)")
        if self.generation.do_sample:
            raise ConfigError("generation.do_sample must be false: translation decodes greedily")


def settings(cfg: TranslateConfig) -> dict:
    """The settings that shape the translations (a re-run must use the same ones), the sources included: two
    datasets whose ids are row numbers must never share translations."""
    raw = config_to_dict(cfg)
    model = {k: raw["model"][k] for k in ("path", "tokenizer", "init_config", "dtype")}
    out = {
        "model": model,
        "sources": raw["sources"],
        "source_lang": cfg.source_lang,
        "target_lang": cfg.target_lang,
        "roles": raw["roles"],
        "prompt": raw["prompt"],
        "segments": raw["segments"],
        "max_new_tokens": cfg.generation.max_new_tokens,
        "cleaning": raw["cleaning"],
    }
    if cfg.model.init_config is not None:
        out["seed"] = cfg.seed  # random weights depend on it
    return out


def output_names(cfg: TranslateConfig) -> list[str]:
    """File name of each source's translation: `<stem>.<target_lang>.jsonl`, prefixed by the index on clashes."""
    stems = [re.sub(r"[^\w.-]+", "_", Path(s.path).stem or s.path) for s in cfg.sources]
    names = [f"{stem}.{cfg.target_lang}.jsonl" for stem in stems]
    if len(set(names)) < len(names):
        names = [f"{i}_{name}" for i, name in enumerate(names)]
    return names
