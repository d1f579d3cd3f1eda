"""Configuration of the data pipeline: where records come from and how they become training examples.

Plain dataclasses; `trainer.config` loads them from YAML. Every field documents itself in `metadata["help"]`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

SourceFormat = Literal["messages", "oasst_tree", "helpsteer2", "preference"]


def _opt(default=dataclasses.MISSING, *, help: str, factory=dataclasses.MISSING):  # noqa: A002
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class SourceConfig:
    """One data source: a Hugging Face dataset id or a local .jsonl/.json/.parquet file."""

    path: str = _opt(help="Hub dataset id (e.g. sablo/oasst2_curated) or local .jsonl/.json/.parquet path.")
    format: SourceFormat = _opt(
        "messages", help="Row schema: messages | oasst_tree | helpsteer2 | preference."
    )
    lang: str | None = _opt(
        None, help="Language code of the records (en, fi, ...). null: take the row's `lang` field, else 'en'."
    )
    fraction: float = _opt(
        1.0,
        help="Share of the source's records to use (0..1]. Subsets are deterministic for data.seed and nested: "
        "the 10% subset is contained in the 20% subset.",
    )
    split: str = _opt("train", help="Dataset split (hub datasets; ignored for local files).")
    name: str | None = _opt(
        None, help="Dataset config name for hub datasets (e.g. `fi` for LumiOpen/ifeval_mt)."
    )
    min_margin: float = _opt(
        1.0,
        help="helpsteer2 only: minimum helpfulness difference between chosen and rejected; smaller gaps "
        "(including ties) are dropped and counted.",
    )
    max_records: int | None = _opt(None, help="Read at most this many records (after filtering); null = all.")

    def check(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.min_margin < 0:
            raise ValueError(f"min_margin must be >= 0, got {self.min_margin}")
        if self.max_records is not None and self.max_records < 1:
            raise ValueError(f"max_records must be >= 1 or null, got {self.max_records}")


@dataclasses.dataclass
class DataConfig:
    """Sources, chat rendering, truncation and batching of the training data."""

    sources: list[SourceConfig] = _opt(
        help="List of sources, each {path, format, lang, fraction, split, ...}. en-fi-Xpct = all English "
        "sources plus Finnish sources at fraction X/100.",
        factory=list,
    )
    template: str = _opt(
        "auto",
        help="Chat template: auto (the tokenizer's own template, else chatml) | tokenizer | chatml.",
    )
    prompt_masking: bool = _opt(
        False,
        help="Train only on assistant turns (each turn including its end token). Default false: loss on prompt "
        "and completion, as in the paper.",
    )
    truncation: Literal["truncate", "drop"] = _opt(
        "truncate", help="SFT samples longer than train.max_seq_len: truncate (from the right) or drop."
    )
    max_prompt_length: int = _opt(
        512, help="Preference data: the prompt is cut from the left (oldest turns first) to this many tokens."
    )
    on_invalid: Literal["error", "skip"] = _opt(
        "error",
        help="Invalid records: error (stop with file, line and reason) or skip (count and report by reason).",
    )
    seed: int = _opt(
        0, help="Seed of the subset selection for `fraction` (keeps mixes nested and comparable)."
    )
    shuffle: bool = _opt(
        True, help="Shuffle the training order each epoch (deterministic for seed and epoch)."
    )
    group_by_length: bool = _opt(
        False, help="Group micro-batches by similar length to reduce padding (when packing is off)."
    )
    packing: bool = _opt(
        False,
        help="Pack the examples of each optimizer step into rows (SFT: train.max_seq_len tokens; DPO: twice "
        "that, one prompt shared by both completions) with attention isolated per document. Same examples per "
        "step and the same loss as unpacked, less padding.",
    )
    cache_dir: str | None = _opt(
        None,
        help="Directory for the tokenized-data cache; null = OUTPUT_DIR/../.cache/sisu-data or ~/.cache.",
    )
    num_workers: int = _opt(1, help="Parallel worker processes for tokenization.")

    def check(self) -> None:
        if self.max_prompt_length < 1:
            raise ValueError(f"data.max_prompt_length must be >= 1, got {self.max_prompt_length}")
        if self.num_workers < 1:
            raise ValueError(f"data.num_workers must be >= 1, got {self.num_workers}")
