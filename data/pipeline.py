"""The data path the trainer and `launch/inspect_data.py` share: config -> records -> tokenized examples.

The examples live on disk (data/store.py), built once by all ranks (data/build.py) and memory-mapped; a
DataBundle holds the mapped dataset, what loading and tokenizing reported, and the template.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from data.build import prepare, reports_of, stats_of
from data.config import DataConfig
from data.errors import DataError
from data.group import LOCAL, Group
from data.records import LoadReport
from data.sources import CHAT_FORMATS, PREFERENCE_FORMATS
from data.store import TokenizedDataset
from data.templates import ChatTemplate
from data.tokenize import IGNORE_INDEX, PreferenceExample, TokenizeSettings, TokenizeStats

logger = logging.getLogger("sisu")

Kind = Literal["sft", "preference"]
# Dry runs and plans read and validate every record but tokenize at most this many (an even sample) when the data
# is not tokenized yet: a million conversations would take a single process hours.
DRY_RUN_RECORDS = 20_000


@dataclasses.dataclass
class DataBundle:
    """Everything the trainer needs from the data layer, plus what happened on the way."""

    kind: Kind
    dataset: TokenizedDataset
    reports: list[LoadReport]
    stats: TokenizeStats
    template: ChatTemplate
    max_len: int | None = None
    key: str = ""  # what the tokenized data was made of (sources' bytes, tokenizer, template, settings)

    @property
    def sampled_from(self) -> int | None:
        """The number of records of the mix when only a sample of them was tokenized (a dry run), else None."""
        return self.dataset.meta["covers"].get("sample_of")

    def estimated_examples(self) -> int:
        """The examples of the whole mix: exact, or scaled from the sample."""
        if self.sampled_from is None:
            return len(self.dataset)
        return round(len(self.dataset) * self.sampled_from / max(self.stats.num_records, 1))

    def lengths(self) -> np.ndarray:
        return self.dataset.lengths()

    def num_target_tokens(self) -> int:
        return self.dataset.num_target_tokens()

    def summary_lines(self) -> list[str]:
        lines = [f"source {report.summary()}" for report in self.reports]
        if self.sampled_from is not None:
            lines.append(
                f"tokenized a sample: {self.stats.num_records} of the {self.sampled_from} records, spread evenly "
                "(every record was read and validated; the run tokenizes all of them): the counts and lengths "
                "below are the sample's"
            )
        langs_seen = np.bincount(self.dataset.lang_codes(), minlength=len(self.dataset.langs))
        langs = ", ".join(f"{lang}: {int(n)}" for lang, n in zip(self.dataset.langs, langs_seen) if n)
        lines.append(
            f"{self.kind} examples: {len(self.dataset)} ({langs}) from {self.stats.num_records} records; "
            f"truncated {self.stats.num_truncated}; dropped "
            + (
                ", ".join(
                    f"{r}: {n} (e.g. {self.stats.examples.get(r, '?')})"
                    for r, n in sorted(self.stats.dropped.items())
                )
                or "0"
            )
        )
        if self.stats.num_folded_system:
            where = "first" if self.stats.system_fold == "first_user" else "last"
            lines.append(
                f"chat template {self.template.name!r} would not write a system prompt before an answer: the system "
                f"prompt of {self.stats.num_folded_system} records was folded into their {where} user turn"
            )
        lengths = self.lengths()
        if len(lengths):
            ordered = np.sort(lengths)
            p90 = int(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))])
            lines.append(
                f"tokens per example: min {int(ordered[0])}, median {float(np.median(ordered)):.0f}, p90 {p90}, "
                f"max {int(ordered[-1])}, mean {float(lengths.mean()):.1f}; target tokens {self.num_target_tokens()}"
            )
        return lines


def data_kind(cfg: DataConfig) -> Kind:
    if not cfg.sources:
        raise DataError("data.sources is empty: add at least one {path, format} source")
    formats = {s.format for s in cfg.sources}
    if formats <= set(CHAT_FORMATS):
        return "sft"
    if formats <= set(PREFERENCE_FORMATS):
        return "preference"
    raise DataError(
        f"data.sources mixes chat formats ({', '.join(CHAT_FORMATS)}) and preference formats "
        f"({', '.join(PREFERENCE_FORMATS)}): got {', '.join(sorted(formats))}"
    )


def default_cache_dir() -> str:
    """$SISU_CACHE/tokenized, else .cache/sisu/tokenized under the working directory (see data.cache_dir)."""
    base = os.environ.get("SISU_CACHE") or os.path.join(".cache", "sisu")
    return os.path.join(base, "tokenized")


def tokenize_settings(cfg: DataConfig, *, max_seq_len: int) -> TokenizeSettings:
    """The tokenization settings of a data config (what data.tokenize needs besides tokenizer and template)."""
    return TokenizeSettings(
        max_seq_len=max_seq_len,
        prompt_masking=cfg.prompt_masking,
        truncation=cfg.truncation,
        max_prompt_length=cfg.max_prompt_length,
        on_invalid=cfg.on_invalid,
    )


def build_dataset(
    cfg: DataConfig,
    *,
    tokenizer: Any,
    max_seq_len: int,
    expect: Kind | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    group: Group = LOCAL,
    tokenize_at_most: int | None = None,
) -> DataBundle:
    """Load, mix and tokenize `cfg.sources` (all ranks of `group` together; see data/build.py). `expect` guards
    against preference data in SFT and vice versa. `use_cache=False` builds in a temporary directory that is gone
    when this returns (one process only; the mapped files stay readable). `tokenize_at_most`: unless the data is
    tokenized already, tokenize only a sample of that many records (dry runs; see DataBundle.sampled_from)."""
    kind = data_kind(cfg)
    if expect is not None and kind != expect:
        wanted = (
            f"chat sources ({', '.join(CHAT_FORMATS)})"
            if expect == "sft"
            else f"preference sources ({', '.join(PREFERENCE_FORMATS)})"
        )
        raise DataError(f"this job needs {wanted}, but data.sources holds {kind} data")
    template = ChatTemplate.resolve(tokenizer, cfg.template)
    settings = tokenize_settings(cfg, max_seq_len=max_seq_len)
    if use_cache:
        root = Path(cfg.cache_dir or cache_dir or default_cache_dir())
        dataset = prepare(cfg, kind=kind, tokenizer=tokenizer, template=template, settings=settings,
                          cache_dir=root, group=group, max_records=tokenize_at_most)  # fmt: skip
    else:
        assert group.world_size == 1, "use_cache=False builds in a directory of this process only"
        root = Path(tempfile.mkdtemp(prefix="sisu-tokenized-"))
        try:
            dataset = prepare(cfg, kind=kind, tokenizer=tokenizer, template=template, settings=settings,
                              cache_dir=root, group=group, max_records=tokenize_at_most)  # fmt: skip
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return DataBundle(
        kind, dataset, reports_of(dataset), stats_of(dataset), template, max_len=max_seq_len, key=dataset.key
    )


def mark_trained_text(
    bundle: DataBundle, tokenizer: Any, index: int = 0, *, open_mark: str = "⟦", close_mark: str = "⟧"
) -> str:
    """Decode example `index` with the tokens that carry loss wrapped in marks (for inspection)."""
    example = bundle.dataset[index]
    if isinstance(example, PreferenceExample):
        prompt = tokenizer.decode(list(example.prompt_ids))
        chosen = tokenizer.decode(list(example.chosen_ids))
        rejected = tokenizer.decode(list(example.rejected_ids))
        return f"{prompt}{open_mark}{chosen}{close_mark}\n--- rejected ---\n{prompt}{open_mark}{rejected}{close_mark}"
    pieces: list[str] = []
    run: list[int] = []
    trained = None
    for token, label in zip(example.input_ids, example.labels):
        flag = label != IGNORE_INDEX
        if trained is not None and flag != trained:
            text = tokenizer.decode(run)
            pieces.append(f"{open_mark}{text}{close_mark}" if trained else text)
            run = []
        trained = flag
        run.append(token)
    if run:
        text = tokenizer.decode(run)
        pieces.append(f"{open_mark}{text}{close_mark}" if trained else text)
    return "".join(pieces)


def examples_by_source(bundle: DataBundle) -> dict[tuple[str, str], list[int]]:
    """Indices of the examples of each (source, language), sources as data.sources names them, in data order."""
    sources = bundle.dataset.source_codes()
    langs = bundle.dataset.lang_codes()
    groups: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    for index, (source, lang) in enumerate(zip(sources.tolist(), langs.tolist())):
        groups[(bundle.reports[source].source, bundle.dataset.langs[lang])].append(index)
    return dict(groups)
