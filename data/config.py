"""Configuration of the data pipeline: where records come from and how they become training examples.

Plain dataclasses; `runtime.config` loads them from YAML. Every field documents itself in `metadata["help"]`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from data.errors import ConfigError

SourceFormat = Literal["messages", "oasst_tree", "helpsteer2", "preference", "language_contrast"]


def option(default: Any = dataclasses.MISSING, *, help: str, factory: Any = dataclasses.MISSING) -> Any:  # noqa: A002
    """A dataclass field with its documentation in `metadata["help"]` (docs/config.md is generated from it).
    Use `factory` for mutable defaults; no default makes the field required. Every config of sisu uses it."""
    metadata = {"help": help}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)  # no default (MISSING): a required field


@dataclasses.dataclass
class SourceConfig:
    """One data source: a Hugging Face dataset id or a local .jsonl/.json/.parquet file."""

    path: str = option(help="Hub dataset id (e.g. sablo/oasst2_curated) or local .jsonl/.json/.parquet path.")
    format: SourceFormat = option(
        "messages",
        help="Row schema: messages | oasst_tree | helpsteer2 | preference | language_contrast. messages and "
        "oasst_tree are chat (SFT) data, the others preference (DPO) pairs. language_contrast reads "
        "launch/translate.py output (chat or preference rows with `orig_*` fields): chosen = the translated "
        "answer, rejected = the same answer in the original language; pairs langdetect does not confirm are "
        "dropped and counted.",
    )
    lang: str | None = option(
        None,
        help="Language code of the records (en, fi, ...). null: take the row's `lang` field, else 'en' "
        "(language_contrast: the target language, from here or the row; no default).",
    )
    fraction: float = option(
        1.0,
        help="Share of the source's records to use (0..1]. Subsets are deterministic for data.seed and nested: "
        "the 10% subset is contained in the 20% subset.",
    )
    split: str = option("train", help="Dataset split (hub datasets; ignored for local files).")
    name: str | None = option(
        None, help="Dataset config name for hub datasets (e.g. `fi` for LumiOpen/ifeval_mt)."
    )
    min_margin: float = option(
        1.0,
        help="helpsteer2 only: minimum helpfulness difference between chosen and rejected; smaller gaps "
        "(including ties) are dropped and counted.",
    )
    max_records: int | None = option(
        None, help="Read at most this many records (after filtering); null = all."
    )

    def check(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.min_margin < 0:
            raise ConfigError(f"min_margin must be >= 0, got {self.min_margin}")
        if self.max_records is not None and self.max_records < 1:
            raise ConfigError(f"max_records must be >= 1 or null, got {self.max_records}")


@dataclasses.dataclass
class DataConfig:
    """Sources, chat rendering, truncation and batching of the training data."""

    sources: list[SourceConfig] = option(
        help="List of sources, each {path, format, lang, fraction, split, ...}. en-fi-Xpct = all English "
        "sources plus Finnish sources at fraction X/100.",
        factory=list,
    )
    template: str = option(
        "auto",
        help="Chat template: auto (the tokenizer's own template, else chatml) | tokenizer | chatml.",
    )
    prompt_masking: bool = option(
        False,
        help="Train only on assistant turns (each turn including its end token). Default false: loss on prompt "
        "and completion, as in the paper.",
    )
    truncation: Literal["truncate", "drop"] = option(
        "truncate", help="SFT samples longer than train.max_seq_len: truncate (from the right) or drop."
    )
    max_prompt_length: int = option(
        512, help="Preference data: the prompt is cut from the left (oldest turns first) to this many tokens."
    )
    on_invalid: Literal["error", "skip"] = option(
        "error",
        help="Invalid records: error (stop with file, line and reason) or skip (count and report by reason).",
    )
    seed: int = option(
        0, help="Seed of the subset selection for `fraction` (keeps mixes nested and comparable)."
    )
    shuffle: bool = option(
        True, help="Shuffle the training order each epoch (deterministic for seed and epoch)."
    )
    group_by_length: bool = option(
        False, help="Group micro-batches by similar length to reduce padding (when packing is off)."
    )
    packing: bool = option(
        False,
        help="Pack the examples of each optimizer step into rows (SFT: train.max_seq_len tokens; DPO: twice "
        "that, one prompt shared by both completions) with attention isolated per document. Same examples per "
        "step and the same loss as unpacked, less padding.",
    )
    cache_dir: str | None = option(
        None,
        help="Directory of the tokenized data: one directory per dataset (tokenized-KEY/: int32 token arrays in "
        "shards, .npy files every rank memory-maps; KEY hashes the sources' bytes, the tokenizer, template and "
        "settings; dataset.json says what it covers; safe to delete). A cold start is written here by all ranks "
        "together (a killed one resumes from the shards already written), so on several nodes it must be on a "
        "filesystem every node mounts (a job that finds otherwise stops with one line). null = "
        "$SISU_CACHE/tokenized when SISU_CACHE is set, else .cache/sisu/tokenized under the directory the job is "
        "launched from (the repository root in every recipe: on a cluster the project's shared filesystem, never "
        "a small home quota or a node-local /tmp).",
    )
    num_workers: int = option(
        1,
        help="Processes per rank that read sources and tokenize on a cold start (1: in the rank's own process). "
        "Every rank takes its share of the shards, so a job tokenizes with ranks x num_workers processes; leave "
        "the cores the rank itself needs (on LUMI, 7 cores per GCD: up to 6).",
    )

    def check(self) -> None:
        if self.max_prompt_length < 1:
            raise ConfigError(f"data.max_prompt_length must be >= 1, got {self.max_prompt_length}")
        if self.num_workers < 1:
            raise ConfigError(f"data.num_workers must be >= 1, got {self.num_workers}")
